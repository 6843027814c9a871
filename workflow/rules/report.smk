rule figures:
    input:
        splits=f"{RUN}/splits.parquet",
        distance=f"{RUN}/split_distance.parquet",
    output:
        fig1=report(
            f"{RUN}/figures/fig1_split_distance.png",
            caption="../report/fig1.rst",
            category="Split distance",
        ),
        fig2=report(
            f"{RUN}/figures/fig2_split_distance_by_level.png",
            caption="../report/fig2.rst",
            category="Split distance",
        ),
        between=report(
            f"{RUN}/figures/between_metrics.png",
            caption="../report/between.rst",
            category="Beyond the paper",
        ),
        trees=report(
            f"{RUN}/figures/trees.png",
            caption="../report/trees.rst",
            category="Beyond the paper",
        ),
        pdfs=multiext(
            f"{RUN}/figures/",
            "fig1_split_distance.pdf",
            "fig2_split_distance_by_level.pdf",
            "between_metrics.pdf",
            "trees.pdf",
        ),
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output.fig1),
    log:
        f"{RUN}/logs/figures.log",
    benchmark:
        f"{RUN}/benchmarks/figures.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "fewshot figures --splits {input.splits:q} --distance {input.distance:q}"
        " --out-dir {params.out_dir:q} > {log:q} 2>&1"
