# Split distances over every split of the run, and the figures drawn from them.


rule compute_split_distances:
    input:
        all_split_files(),
    output:
        splits=run_tables()["splits"],
        distance=run_tables()["distance"],
    log:
        f"{RUN}/logs/compute_split_distances.log",
    benchmark:
        f"{RUN}/benchmarks/compute_split_distances.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        spec=spec_json(SETTINGS.trees_spec()),
    shell:
        "fewshot compute-split-distances --spec {params.spec:q} --splits {input:q}"
        " --out-splits {output.splits:q} --out-distance {output.distance:q} > {log:q} 2>&1"


rule draw_figures:
    input:
        splits=run_tables()["splits"],
        distance=run_tables()["distance"],
    output:
        [
            report(figure(name), caption=f"../report/{caption}", category=category)
            for name, (category, caption) in FIGURES.items()
        ],
        [figure(name, "pdf") for name in FIGURES],
        [figure(name, "csv") for name in PLOTTED_DATA],
    log:
        f"{RUN}/logs/draw_figures.log",
    benchmark:
        f"{RUN}/benchmarks/draw_figures.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        out_dir=lambda wc, output: os.path.dirname(output[0]),
    shell:
        "fewshot draw-figures --splits {input.splits:q} --distance {input.distance:q}"
        " --out-dir {params.out_dir:q} > {log:q} 2>&1"
