"""SCAFFOLD (Karimireddy et al., ICML 2020): control variates correct client drift.

Each client keeps a control variate c_i between rounds; the server keeps c. Local gradients are
corrected by (c - c_i). After training, c_i is refreshed with option II of the paper:
c_i+ = c_i - c + (x - y_i) / (K lr), and the server moves c by the mean change over all N clients.
"""

from __future__ import annotations

import torch

from fedmetamal.fl.base import Algorithm, ClientOutput, RoundContext, State


class Scaffold(Algorithm):
    name = "scaffold"
    summary = "control variates correct client drift under non-IID data"
    reference = "Karimireddy et al., ICML 2020"

    def init_server_state(self, global_params: torch.Tensor) -> State:
        state = super().init_server_state(global_params)
        state["control"] = torch.zeros_like(global_params)
        return state

    def broadcast(self, server_state: State) -> State:
        return {"control": server_state["control"]}

    def init_client_state(self, num_params: int) -> State:
        return {"control": torch.zeros(num_params)}

    def gradient_correction(
        self, params: torch.Tensor, ctx: RoundContext, client_state: State
    ) -> torch.Tensor | None:
        return ctx.broadcast["control"] - client_state["control"]

    def client_finish(
        self,
        final_params: torch.Tensor,
        steps: torch.Tensor,
        ctx: RoundContext,
        client_state: State,
    ) -> tuple[State, State]:
        c_i = client_state["control"]
        k_lr = (steps.clamp_min(1).to(final_params.dtype) * ctx.lr).unsqueeze(-1)
        new_c_i = c_i - ctx.broadcast["control"] + (ctx.global_params - final_params) / k_lr
        return {"control_delta": new_c_i - c_i}, {"control": new_c_i}

    def server_update(
        self,
        global_params: torch.Tensor,
        server_state: State,
        out: ClientOutput,
        weights: torch.Tensor,
        n_clients_total: int,
    ) -> tuple[torch.Tensor, State]:
        control = server_state["control"]
        opt_state = {k: v for k, v in server_state.items() if k != "control"}
        new_params, opt_state = self.optimizer.step(
            global_params, self.aggregate(out, weights), opt_state
        )
        new_control = control + out.extras["control_delta"].sum(0) / n_clients_total
        return new_params, {**opt_state, "control": new_control}
