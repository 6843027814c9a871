rule train_leaves:
    input:
        splits=tree_splits,
        data_split=f"{RUN}/data/split_seed{{seed}}.json",
    output:
        f"{RUN}/{{metric}}/seed{{seed}}/leaves/chunk{{chunk}}.parquet",
    params:
        leaves=lambda wc: " ".join(leaf_chunks()[int(wc.chunk)]),
        factors=",".join(map(str, FACTORS)),
        train=train_args(),
        C=config["supernet"]["C"],
        N=config["supernet"]["N"],
        input_size=config["data"]["input_size"],
        dataset=config["data"]["name"],
        data_root=config["data"].get("root") or "",
        work_dir=lambda wc: f"{RUN}/{wc.metric}/seed{wc.seed}/leaves/work",
        device=config["device"],
    log:
        f"{RUN}/logs/train_leaves/{{metric}}/seed{{seed}}_chunk{{chunk}}.log",
    benchmark:
        f"{RUN}/benchmarks/train_leaves/{{metric}}/seed{{seed}}_chunk{{chunk}}.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=config["training"]["leaves"]["runtime_min"],
        gpu=config["training"]["gpus"],
    shell:
        "OMP_NUM_THREADS={threads} fewshot train-leaves --metric {wildcards.metric} --seed {wildcards.seed}"
        " --leaves {params.leaves} --factors {params.factors} --splits {input.splits:q}"
        " --C {params.C} --N {params.N} --input-size {params.input_size} {params.train}"
        " --dataset {params.dataset:q} --data-root={params.data_root:q} --data-split {input.data_split:q}"
        " --work-dir {params.work_dir:q} --device {params.device:q} --out {output:q} > {log:q} 2>&1"


rule collect_leaves:
    input:
        all_leaf_tables(),
    output:
        f"{RUN}/leaves.parquet",
    log:
        f"{RUN}/logs/collect_leaves.log",
    benchmark:
        f"{RUN}/benchmarks/collect_leaves.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "fewshot collect-leaves --tables {input:q} --out {output:q} > {log:q} 2>&1"
