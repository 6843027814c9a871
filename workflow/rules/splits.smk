rule init_root:
    input:
        split=f"{RUN}/data/split_seed{{seed}}.json",
    output:
        f"{RUN}/seed{{seed}}/root.pt",
    params:
        C=config["supernet"]["C"],
        N=config["supernet"]["N"],
        input_size=config["data"]["input_size"],
        warmup=warmup_args(),
        dataset=config["data"]["name"],
        data_root=config["data"].get("root") or "",
        device=config["device"],
    log:
        f"{RUN}/logs/init_root/seed{{seed}}.log",
    benchmark:
        f"{RUN}/benchmarks/init_root/seed{{seed}}.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "fewshot init-root --C {params.C} --N {params.N} --input-size {params.input_size}"
        " {params.warmup} --dataset {params.dataset:q} --data-root={params.data_root:q}"
        " --data-split {input.split:q} --device {params.device:q}"
        " --seed {wildcards.seed} --out {output:q} > {log:q} 2>&1"


rule score:
    input:
        root=f"{RUN}/seed{{seed}}/root.pt",
        split=f"{RUN}/data/split_seed{{seed}}.json",
        previous=previous_splits,
        parent_weights=parent_weights,
    output:
        scores=f"{RUN}/{{metric}}/seed{{seed}}/scores_L{{level}}.parquet",
        weights=f"{RUN}/{{metric}}/seed{{seed}}/weights_L{{level}}.pt",
    params:
        warmup=warmup_args(),
        parent_weights=lambda wc, input: (
            f"--parent-weights {input.parent_weights}" if input.parent_weights else ""
        ),
        settings=metric_settings,
        code=metric_code,
        tree=tree_args(),
        dataset=config["data"]["name"],
        data_root=config["data"].get("root") or "",
        batch_size=lambda wc: config["metrics"][wc.metric]["batch_size"],
        batches=lambda wc: config["metrics"][wc.metric]["batches"],
        device=config["device"],
    log:
        f"{RUN}/logs/score/{{metric}}/seed{{seed}}_L{{level}}.log",
    benchmark:
        f"{RUN}/benchmarks/score/{{metric}}/seed{{seed}}_L{{level}}.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "OMP_NUM_THREADS={threads} fewshot score --metric {wildcards.metric} --settings {params.settings:q}"
        " --seed {wildcards.seed} --level {wildcards.level} {params.tree}"
        " --previous {input.previous:q} --root {input.root:q} --dataset {params.dataset:q}"
        " --data-root={params.data_root:q} --data-split {input.split:q}"
        " --batch-size {params.batch_size} --batches {params.batches} --device {params.device:q}"
        " {params.warmup} {params.parent_weights} --out-weights {output.weights:q}"
        " --out {output.scores:q} > {log:q} 2>&1"


rule split:
    input:
        scores=f"{RUN}/{{metric}}/seed{{seed}}/scores_L{{level}}.parquet",
        previous=previous_splits,
    output:
        f"{RUN}/{{metric}}/seed{{seed}}/split_L{{level}}.json",
    params:
        tree=tree_args(),
        balanced="--balanced" if config["tree"]["balanced"] else "",
    log:
        f"{RUN}/logs/split/{{metric}}/seed{{seed}}_L{{level}}.log",
    benchmark:
        f"{RUN}/benchmarks/split/{{metric}}/seed{{seed}}_L{{level}}.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "fewshot split --metric {wildcards.metric} --seed {wildcards.seed} --level {wildcards.level}"
        " {params.tree} {params.balanced} --previous {input.previous:q} --scores {input.scores:q}"
        " --out {output:q} > {log:q} 2>&1"


rule aggregate:
    input:
        all_splits(),
    output:
        splits=f"{RUN}/splits.parquet",
        distance=f"{RUN}/split_distance.parquet",
    log:
        f"{RUN}/logs/aggregate.log",
    benchmark:
        f"{RUN}/benchmarks/aggregate.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "fewshot aggregate --splits {input:q} --out-splits {output.splits:q}"
        " --out-distance {output.distance:q} > {log:q} 2>&1"
