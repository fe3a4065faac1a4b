"""Model data: fetching `ModelDataUrl` (s3://, https://, file://), extracting it safely, and the
content-addressed cache every container's /opt/ml/model comes from. Local folders are copied
into that cache, and `local_policy` says which local paths may be served at all.

Below the backends in the layers: it imports only settings, so a backend that places containers
on other machines (Ray) runs the same code on the node that fetches.
"""
