"""`polyhost/sklearn`: serves scikit-learn models like SageMaker's scikit-learn container.

Run as `python -m polyhost.stacks.sklearn`. Unlike SageMaker's container it also has a default
`model_fn` (model.joblib or a pickle), and it can answer `predict_proba` and the other estimator
methods on request (see `polyhost.stacks.sklearn.handlers`).
"""
