# Helpers shared by the workflow files: output paths and the expansion of the configuration.


RUN = f"results/{config['run']}"


def data_splits():
    """The train/validation split file of every seed."""
    return expand(f"{RUN}/data/split_seed{{seed}}.json", seed=config["seeds"])
