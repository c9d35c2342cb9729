"""Monitoring: drift of live traffic, and consistency of served features with offline ones.

Pure statistics (:mod:`monitoring.drift`, :func:`monitoring.consistency.compare_features`)
are apart from the I/O around them (:mod:`monitoring.check`, :mod:`monitoring.report`); both
read the prediction log through its one reader,
:func:`fraud_platform.contracts.read_prediction_log`.
"""
