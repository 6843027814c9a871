# The splitting tree: root supernet per seed, then per metric, seed and level: score, split, warm up.


rule train_root:
    input:
        holdout=out("holdout"),
        stamps=stamps("root"),
    output:
        out("root"),
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
        checkpoints=CHECKPOINTS,
    shell:
        "OMP_NUM_THREADS={threads} fewshot train-root --spec {params.spec:q} --holdout {input.holdout:q}"
        " --checkpoints {params.checkpoints:q} --out {output:q} > {log:q} 2>&1"


rule score_edges:
    input:
        holdout=out("holdout"),
        weights=get_scoring_weights,
        previous=get_splits_above,
        stamps=stamps("scores"),
    output:
        out("scores"),
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
    shell:
        "OMP_NUM_THREADS={threads} fewshot score-edges --spec {params.spec:q} --holdout {input.holdout:q}"
        " --weights {input.weights:q} --previous {input.previous:q}"
        " --out {output:q} > {log:q} 2>&1"


rule split_nodes:
    input:
        scores=out("scores"),
        previous=get_splits_above,
        stamps=stamps("splits"),
    output:
        out("splits"),
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
        holdout=out("holdout"),
        parent_weights=get_parent_weights,
        splits=get_splits_above,
        stamps=stamps("nodes"),
    output:
        out("nodes"),
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
        checkpoints=CHECKPOINTS,
    shell:
        "OMP_NUM_THREADS={threads} fewshot train-children --spec {params.spec:q} --holdout {input.holdout:q}"
        " --parent-weights {input.parent_weights:q} --splits {input.splits:q}"
        " --checkpoints {params.checkpoints:q} --out {output:q} > {log:q} 2>&1"
