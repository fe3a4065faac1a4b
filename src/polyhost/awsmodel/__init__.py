"""AWS service models, from botocore's own files: shapes (`shapes`) and requests checked
against them (`check`), for every API polyhost speaks (SageMaker, CloudWatch, CloudWatch Logs).

Below the services that use it and above nothing of polyhost but the lowest layers: the words
of each service's error messages and the error class they raise stay with that service.
"""
