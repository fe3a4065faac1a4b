"""SageMaker data capture (DataCaptureConfig): invocations copied to S3, off the invocation path.

`config` turns an endpoint's DataCaptureSpec into what the runtime adapter checks per
invocation, `sampler` draws InitialSamplingPercentage, `buffer` holds what waits to be written
(bounded), `record` is SageMaker's capture format and key layout, `writer` is the thread that
writes batches to S3, and `service` ties them to what serves (docs/data-capture.md).
"""
