"""The streaming CLIP trainer: tokenizer, model, loss, webdataset loader, evaluation, loop.

`train.trainer.train(config, shards, out_dir, eval_dir)` is the entry the CLI calls;
`python -m train` is the same under torchrun.
"""
