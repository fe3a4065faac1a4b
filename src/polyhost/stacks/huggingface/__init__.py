"""`polyhost/huggingface`: transformers pipelines served like SageMaker's Hugging Face container.

Run as `python -m polyhost.stacks.huggingface`. The model archive holds the transformers files
at its root (config.json, the weights, the tokenizer or image processor), or a
`code/inference.py` whose handlers (`model_fn`, `input_fn`, `predict_fn`, `output_fn`, or
`transform_fn`) replace the defaults, as in SageMaker's Hugging Face inference toolkit.
`HF_TASK` picks the pipeline; `HF_MODEL_ID` may name a local folder holding the model (no
model hub is reachable: the stack runs with HF_HUB_OFFLINE=1). See `handlers`.
"""
