"""`polyhost/xgboost`: serves XGBoost models like SageMaker's XGBoost container.

Run as `python -m polyhost.stacks.xgboost`. The model archive holds `xgboost-model` (a Booster
saved with `save_model`, or pickled); requests are text/csv, text/libsvm, application/json or
application/x-recordio-protobuf; answers CSV or JSON per Accept. A `code/inference.py` may
replace `model_fn`, `input_fn`, `predict_fn` and `output_fn` (or `transform_fn`), as in
SageMaker's XGBoost framework mode (see `polyhost.stacks.xgboost.handlers`).
"""
