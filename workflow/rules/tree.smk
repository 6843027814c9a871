# The splitting tree: root supernet per seed, then per metric, seed and level: score, split, warm up.


rule train_root:
    input:
        holdout=holdout(),
    output:
        root_weights(),
    log:
        log_file("train_root", "seed{seed}"),
    benchmark:
        benchmark_file("train_root", "seed{seed}")
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=config["training"]["warmup"]["runtime_min"],
        gpu=GPUS if SETTINGS.warms_up else 0,
    params:
        spec=lambda wc: spec_json(SETTINGS.root_spec(int(wc.seed))),
        checkpoints=lambda wc: checkpoints(f"seed{wc.seed}"),
        device=SETTINGS.device,
    shell:
        "OMP_NUM_THREADS={threads} fewshot train-root --spec {params.spec:q} --holdout {input.holdout:q}"
        " --checkpoints {params.checkpoints:q} --device {params.device:q} --out {output:q} > {log:q} 2>&1"


rule score_edges:
    input:
        holdout=holdout(),
        weights=get_scoring_weights,
        previous=get_splits_above,
    output:
        scores(),
    log:
        log_file("score_edges", "{metric}/seed{seed}_L{level}"),
    benchmark:
        benchmark_file("score_edges", "{metric}/seed{seed}_L{level}")
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        spec=lambda wc: spec_json(
            SETTINGS.score_spec(wc.metric, int(wc.seed), int(wc.level))
        ),
        code=get_metric_code,
        device=SETTINGS.device,
    shell:
        "OMP_NUM_THREADS={threads} fewshot score-edges --spec {params.spec:q} --holdout {input.holdout:q}"
        " --weights {input.weights:q} --previous {input.previous:q} --device {params.device:q}"
        " --out {output:q} > {log:q} 2>&1"


rule split_nodes:
    input:
        scores=scores(),
        previous=get_splits_above,
    output:
        split_file(),
    log:
        log_file("split_nodes", "{metric}/seed{seed}_L{level}"),
    benchmark:
        benchmark_file("split_nodes", "{metric}/seed{seed}_L{level}")
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        spec=lambda wc: spec_json(
            SETTINGS.split_spec(wc.metric, int(wc.seed), int(wc.level))
        ),
    shell:
        "fewshot split-nodes --spec {params.spec:q} --scores {input.scores:q}"
        " --previous {input.previous:q} --out {output:q} > {log:q} 2>&1"


rule train_children:
    input:
        holdout=holdout(),
        parent_weights=get_parent_weights,
        splits=get_splits_above,
    output:
        children_weights(),
    log:
        log_file("train_children", "{metric}/seed{seed}_L{level}"),
    benchmark:
        benchmark_file("train_children", "{metric}/seed{seed}_L{level}")
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=config["training"]["warmup"]["runtime_min"],
        gpu=GPUS,
    params:
        spec=lambda wc: spec_json(
            SETTINGS.children_spec(wc.metric, int(wc.seed), int(wc.level))
        ),
        checkpoints=lambda wc: checkpoints(wc.metric, f"seed{wc.seed}"),
        device=SETTINGS.device,
    shell:
        "OMP_NUM_THREADS={threads} fewshot train-children --spec {params.spec:q} --holdout {input.holdout:q}"
        " --parent-weights {input.parent_weights:q} --splits {input.splits:q}"
        " --checkpoints {params.checkpoints:q} --device {params.device:q} --out {output:q} > {log:q} 2>&1"
