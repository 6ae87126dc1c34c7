"""Long Range Arena tasks: loaders for the official files and generators (ListOps, Pathfinder).

One module per task: `listops`, `pathfinder`, `text`, `retrieval`, `image`. Each has a
``load(*, data_dir=None, seed=0, **options) -> Task``; use `ssm_jax.data.get_task`.
"""
