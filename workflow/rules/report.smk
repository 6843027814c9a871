# Split distances over every split of the run, and the figures drawn from them.


rule compute_split_distances:
    input:
        splits=all_of("splits"),
        stamps=stamps("splits_table", "split_distance"),
    output:
        splits=out("splits_table"),
        distance=out("split_distance"),
    log:
        log_file("compute_split_distances", "run"),
    benchmark:
        benchmark_file("compute_split_distances", "run")
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        spec=spec_json(SETTINGS.distances_spec()),
    shell:
        "fewshot compute-split-distances --spec {params.spec:q} --splits {input.splits:q}"
        " --out-splits {output.splits:q} --out-distance {output.distance:q} > {log:q} 2>&1"


rule draw_figures:
    input:
        splits=out("splits_table"),
        distance=out("split_distance"),
    output:
        [
            report(png, caption=caption, category=category)
            for png, caption, category in figure_pngs("draw_figures")
        ],
        figure_extras("draw_figures"),
    log:
        log_file("draw_figures", "run"),
    benchmark:
        benchmark_file("draw_figures", "run")
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        spec=spec_json(SETTINGS.figures_spec()),
        out_dir=lambda wc, output: os.path.dirname(output[0]),
    shell:
        "fewshot draw-figures --spec {params.spec:q} --splits {input.splits:q} --distance {input.distance:q}"
        " --out-dir {params.out_dir:q} > {log:q} 2>&1"
