"""SageMaker data capture (DataCaptureConfig): invocations copied to S3, off the invocation path.

`config` turns an endpoint's DataCaptureSpec into what the runtime adapter checks per
invocation, `sampler` draws InitialSamplingPercentage, `buffer` holds what waits to be written
(bounded), `record` is SageMaker's capture format and key layout, `writer` is the server's
thread that hands batches to the writer process, `process` is that process (it formats the
records and writes them to S3, on an interpreter of its own), and `service` ties them to what
serves, shadow variants' copies included (docs/data-capture.md).
"""
