"""MoRec's objective coordinator (outer level of the tri-level scheme, arXiv 2310.13260).

* :class:`PIController` — UniRec's ``PIXController`` dynamics (named "PID", no derivative term):
  e_t = L* - L_acc,t;  P_t = K_p / (1 + exp(e_t));  I_t = I_{t-1} - K_i e_t (only while the previous
  beta lies in [beta_min, beta_max]; beta starts at 0, so with beta_min > 0 the integral is skipped at
  step 1 and never bounded afterwards — quirk M8, kept);  beta_t = clamp(P_t + I_t + beta_min);
  frozen after ``max_iter`` steps.
* :class:`PIDCoordinator` — L = lambda * sum_o c_o L_o + beta_t L_acc (``morec_objective_controller: PID``).
* :class:`StaticCoordinator` — L = sum_o c_o L_o + c_acc L_acc, weights of length |O| + 1, accuracy last.
"""

import math
from ast import literal_eval

from recbole_ext.errors import ConfigError


class PIController:
    def __init__(self, expect_loss, K_p=0.01, K_i=0.001, beta_min=0.6, beta_max=1.3, max_iter=1_000_000):
        if beta_min > beta_max:
            raise ConfigError(f"morec_beta_min ({beta_min}) must not exceed morec_beta_max ({beta_max})")
        self.expect_loss = float(expect_loss)
        self.K_p, self.K_i = float(K_p), float(K_i)
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)
        self.max_iter = int(max_iter)
        self.integral = 0.0
        self.beta = 0.0
        self.steps = 0

    def step(self, accuracy_loss):
        """β for this step from the step's detached accuracy loss (a float)."""
        if self.steps >= self.max_iter:
            return self.beta
        self.steps += 1
        error = self.expect_loss - float(accuracy_loss)
        # K_p / (1 + exp(e)), written stably
        p_term = self.K_p * (math.exp(-error) / (1.0 + math.exp(-error)) if error > 0 else 1.0 / (1.0 + math.exp(error)))
        if self.beta_min <= self.beta <= self.beta_max:
            self.integral -= self.K_i * error
        self.beta = min(max(p_term + self.integral + self.beta_min, self.beta_min), self.beta_max)
        return self.beta


def parse_weights(value, length, key="morec_objective_weights", meaning=""):
    """A list of ``length`` floats from a list or its string form ("[0.3,0.3,0.4]", UniRec's literal_eval)."""
    if isinstance(value, str):
        try:
            value = literal_eval(value)
        except (ValueError, SyntaxError) as exc:
            raise ConfigError(f"{key}: cannot parse {value!r} as a list of numbers ({exc})") from None
    if isinstance(value, (int, float)):
        value = [value]
    try:
        weights = [float(v) for v in value]
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected a list of numbers, got {value!r}") from None
    if len(weights) != length:
        raise ConfigError(f"{key} has {len(weights)} entries but needs {length} {meaning}: got {weights}")
    return weights


class PIDCoordinator:
    """``morec_objective_controller: PID``: L = λ Σ c_o L_o + β_t L_acc with β_t from :class:`PIController`."""

    name = "PID"

    def __init__(self, objectives, weights, lambda_, controller):
        objectives = list(objectives)
        if len(objectives) == 1:
            self.weights = [1.0]  # UniRec: c = [1.0] whatever the config says
        else:
            self.weights = parse_weights(weights, len(objectives),
                                         meaning=f"(one per objective {objectives}, for the PID controller)")
        self.lambda_ = float(lambda_)
        self.controller = controller

    @property
    def beta(self):
        return self.controller.beta

    def combine(self, objective_losses, accuracy_loss):
        beta = self.controller.step(float(accuracy_loss.detach()))
        total = sum(c * loss for c, loss in zip(self.weights, objective_losses))
        return self.lambda_ * total + beta * accuracy_loss


class StaticCoordinator:
    """``morec_objective_controller: Static``: L = Σ c_o L_o + c_acc L_acc (no λ, no β)."""

    name = "Static"

    def __init__(self, objectives, weights):
        objectives = list(objectives)
        self.weights = parse_weights(weights, len(objectives) + 1,
                                     meaning=f"(one per objective {objectives} plus the accuracy weight "
                                     "last, for the Static controller)")

    @property
    def beta(self):
        return self.weights[-1]

    def combine(self, objective_losses, accuracy_loss):
        total = sum(c * loss for c, loss in zip(self.weights[:-1], objective_losses))
        return total + self.weights[-1] * accuracy_loss


def build_coordinator(kind, objectives, weights, lambda_=0.2, expect_loss=0.2, K_p=0.01, K_i=0.001,
                      beta_min=0.6, beta_max=1.3, max_iter=1_000_000):
    if kind == "PID":
        return PIDCoordinator(objectives, weights, lambda_,
                              PIController(expect_loss, K_p, K_i, beta_min, beta_max, max_iter))
    if kind == "Static":
        return StaticCoordinator(objectives, weights)
    raise ConfigError(f"morec_objective_controller must be 'PID' or 'Static', got {kind!r}")
