"""FedAvg (McMahan et al., AISTATS 2017): local SGD, weighted mean of the client models."""

from __future__ import annotations

from fedmetamal.fl.base import Algorithm


class FedAvg(Algorithm):
    name = "fedavg"
    summary = "local SGD, sample-weighted average of client models"
    reference = "McMahan et al., AISTATS 2017"
