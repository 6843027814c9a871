# The ranking study: ground truth for a seeded set of architectures, their leaf-inherited accuracy in
# every tree, a one-shot baseline per seed, and the ranking measures of each (study.archs > 0).


rule sample_study_set:
    output:
        study_file("archs.json"),
    log:
        f"{RUN}/logs/sample_study_set.log",
    benchmark:
        f"{RUN}/benchmarks/sample_study_set.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        spec=spec_json(SETTINGS.study_set_spec()),
    shell:
        "fewshot sample-study-set --spec {params.spec:q} --out {output:q} > {log:q} 2>&1"


rule train_standalone:
    input:
        study_set=study_file("archs.json"),
        holdout=holdout(SETTINGS.study.seed),
    output:
        study_file("standalone_chunk{chunk}.parquet"),
    log:
        log_file("train_standalone", "chunk{chunk}"),
    benchmark:
        benchmark_file("train_standalone", "chunk{chunk}")
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=config["study"]["runtime_min"],
        gpu=GPUS,
    params:
        spec=lambda wc: spec_json(SETTINGS.standalone_spec(int(wc.chunk))),
        checkpoints=checkpoints("study"),
        device=SETTINGS.device,
    shell:
        "OMP_NUM_THREADS={threads} fewshot train-standalone --spec {params.spec:q} --study-set {input.study_set:q}"
        " --holdout {input.holdout:q} --checkpoints {params.checkpoints:q} --device {params.device:q}"
        " --out {output:q} > {log:q} 2>&1"


rule train_oneshot:
    input:
        holdout=holdout(),
    output:
        oneshot_weights(),
    log:
        log_file("train_oneshot", "seed{seed}"),
    benchmark:
        benchmark_file("train_oneshot", "seed{seed}")
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=config["training"]["leaves"]["runtime_min"],
        gpu=GPUS,
    params:
        spec=lambda wc: spec_json(SETTINGS.oneshot_spec(int(wc.seed))),
        checkpoints=lambda wc: checkpoints(f"seed{wc.seed}"),
        device=SETTINGS.device,
    shell:
        "OMP_NUM_THREADS={threads} fewshot train-oneshot --spec {params.spec:q} --holdout {input.holdout:q}"
        " --checkpoints {params.checkpoints:q} --device {params.device:q} --out {output:q} > {log:q} 2>&1"


rule evaluate_study:
    input:
        study_set=study_file("archs.json"),
        holdout=holdout(),
        splits=get_seed_splits,
        leaf_weights=get_seed_leaf_weights,
        oneshot=oneshot_weights(),
    output:
        study_file("seed{seed}.parquet"),
    log:
        log_file("evaluate_study", "seed{seed}"),
    benchmark:
        benchmark_file("evaluate_study", "seed{seed}")
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=config["study"]["runtime_min"],
        gpu=GPUS,
    params:
        spec=lambda wc: spec_json(SETTINGS.study_eval_spec(int(wc.seed))),
        device=SETTINGS.device,
    shell:
        "OMP_NUM_THREADS={threads} fewshot evaluate-study --spec {params.spec:q} --study-set {input.study_set:q}"
        " --holdout {input.holdout:q} --splits {input.splits:q} --leaf-weights {input.leaf_weights:q}"
        " --oneshot {input.oneshot:q} --device {params.device:q} --out {output:q} > {log:q} 2>&1"


rule rank_study:
    input:
        standalone=[
            study_file(f"standalone_chunk{k}.parquet")
            for k in range(SETTINGS.standalone_chunks())
        ],
        studies=[study_file(f"seed{s}.parquet") for s in SEEDS],
    output:
        run_tables()["ranking"],
    log:
        f"{RUN}/logs/rank_study.log",
    benchmark:
        f"{RUN}/benchmarks/rank_study.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        spec=spec_json(SETTINGS.ranking_spec()),
    shell:
        "fewshot rank-study --spec {params.spec:q} --standalone {input.standalone:q} --studies {input.studies:q}"
        " --out {output:q} > {log:q} 2>&1"


rule draw_ranking:
    input:
        run_tables()["ranking"],
    output:
        png=report(
            figure("ranking"),
            caption="../report/ranking.rst",
            category="Ranking study",
        ),
        pdf=figure("ranking", "pdf"),
        csv=figure("ranking", "csv"),
    log:
        f"{RUN}/logs/draw_ranking.log",
    benchmark:
        f"{RUN}/benchmarks/draw_ranking.tsv"
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "fewshot draw-ranking --ranking {input:q} --out {output.png:q} > {log:q} 2>&1"
