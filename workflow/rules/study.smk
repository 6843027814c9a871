# The ranking study: ground truth for a seeded set of architectures, their leaf-inherited accuracy in
# every tree, a one-shot baseline per seed, and the ranking measures of each (study.archs > 0).


rule sample_study_set:
    output:
        out("study_set"),
    log:
        log_file("sample_study_set", "run"),
    benchmark:
        benchmark_file("sample_study_set", "run")
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
        study_set=out("study_set"),
        holdout=out("holdout", seed=SETTINGS.study.seed),
    output:
        out("standalone"),
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
        checkpoints=CHECKPOINTS,
    shell:
        "OMP_NUM_THREADS={threads} fewshot train-standalone --spec {params.spec:q} --study-set {input.study_set:q}"
        " --holdout {input.holdout:q} --checkpoints {params.checkpoints:q}"
        " --out {output:q} > {log:q} 2>&1"


rule train_oneshot:
    input:
        holdout=out("holdout"),
    output:
        out("oneshot"),
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
        checkpoints=CHECKPOINTS,
    shell:
        "OMP_NUM_THREADS={threads} fewshot train-oneshot --spec {params.spec:q} --holdout {input.holdout:q}"
        " --checkpoints {params.checkpoints:q} --out {output:q} > {log:q} 2>&1"


rule evaluate_study:
    input:
        study_set=out("study_set"),
        holdout=out("holdout"),
        splits=get_seed_splits,
        leaf_weights=get_seed_leaf_weights,
        oneshot=out("oneshot"),
    output:
        out("study"),
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
    shell:
        "OMP_NUM_THREADS={threads} fewshot evaluate-study --spec {params.spec:q} --study-set {input.study_set:q}"
        " --holdout {input.holdout:q} --splits {input.splits:q} --leaf-weights {input.leaf_weights:q}"
        " --oneshot {input.oneshot:q} --out {output:q} > {log:q} 2>&1"


rule rank_study:
    input:
        standalone=all_of("standalone"),
        studies=all_of("study"),
    output:
        out("ranking"),
    log:
        log_file("rank_study", "run"),
    benchmark:
        benchmark_file("rank_study", "run")
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
        out("ranking"),
    output:
        png=report(
            figure("ranking"),
            caption="../report/ranking.rst",
            category="Ranking study",
        ),
        pdf=figure("ranking", "pdf"),
        csv=figure("ranking", "csv"),
    log:
        log_file("draw_ranking", "run"),
    benchmark:
        benchmark_file("draw_ranking", "run")
    conda:
        "../../environment.yml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        spec=spec_json(SETTINGS.ranking_figure_spec()),
    shell:
        "fewshot draw-ranking --spec {params.spec:q} --ranking {input:q} --out {output.png:q} > {log:q} 2>&1"
