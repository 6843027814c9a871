rule split_data:
    output:
        f"{RUN}/data/split_seed{{seed}}.json",
    params:
        dataset=config["data"]["name"],
        root=config["data"].get("root") or "",
        download="--download" if config["data"]["download"] else "",
        input_size=config["data"]["input_size"],
        val_fraction=config["data"]["val_fraction"],
    log:
        f"{RUN}/logs/split_data/seed{{seed}}.log",
    benchmark:
        f"{RUN}/benchmarks/split_data/seed{{seed}}.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "fewshot split-data --dataset {params.dataset:q} --root={params.root:q} {params.download}"
        " --input-size {params.input_size} --val-fraction {params.val_fraction}"
        " --seed {wildcards.seed} --out {output:q} > {log:q} 2>&1"
