"""Application Auto Scaling for polyhost's own capacity: an endpoint variant's instances and an
inference component's copies, scaled by target tracking and step policies (fired by CloudWatch
alarms in-process) and by scheduled actions. Capacity is read and set only through the control
plane's operations, so its validation and its deploy path apply as they do to a user's call.
"""
