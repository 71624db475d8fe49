"""ETPO math on hand-made cases: the per-token soft Bellman backup on a tiny token MDP, the policy step."""

from __future__ import annotations

import itertools

import pytest
import torch

from etpo_agents.etpo import (
    conservative_loss,
    critic_loss,
    policy_loss,
    soft_bellman_targets,
    soft_lambda_targets,
    soft_values,
)

BETA, GAMMA, V = 0.5, 0.9, 2


class TinyTokenMDP:
    """2 env steps; every action is 2 tokens from a vocabulary of 2.

    s0 --a=(w1,w2), r0[a]--> s1_{w1} --a', r1[w1][a']--> terminal. Decision states are (env state, prefix):
    prefixes () and (w1,). Each row of the flattened table is (decision state, taken token).
    """

    def __init__(self, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.env_states = ["s0", "s1_0", "s1_1"]
        self.decisions = [(s, p) for s in self.env_states for p in [(), (0,), (1,)]]
        self.index = {d: k for k, d in enumerate(self.decisions)}
        self.r0 = {a: float(torch.rand(1, generator=g)) for a in itertools.product(range(V), repeat=2)}
        self.r1 = {(s, a): float(torch.rand(1, generator=g)) - 0.5 for s in (0, 1) for a in self.r0}
        self.ref_logits = torch.randn(len(self.decisions), V, generator=g)
        self.logits = torch.randn(len(self.decisions), V, generator=g)
        rows, rewards, discounts, next_rows = [], [], [], []
        for d, w in itertools.product(self.decisions, range(V)):
            rows.append((self.index[d], w))
        row_of = {(d, w): r for r, (d, w) in enumerate(rows)}
        for d_index, w in rows:
            state, prefix = self.decisions[d_index]
            if not prefix:  # intermediate token: next decision is (state, (w,)), no reward, no discount
                rewards.append(0.0), discounts.append(1.0), next_rows.append(row_of[(self.index[(state, (w,))], 0)])
            elif state == "s0":  # last token of the first action: reward, discount γ, next env state s1_{w1}
                rewards.append(self.r0[(prefix[0], w)]), discounts.append(GAMMA)
                next_rows.append(row_of[(self.index[(f"s1_{prefix[0]}", ())], 0)])
            else:  # last token of the second action: terminated, no bootstrap
                rewards.append(self.r1[(int(state[-1]), (prefix[0], w))]), discounts.append(0.0), next_rows.append(-1)
        self.row_decision = torch.tensor([r[0] for r in rows])
        self.row_token = torch.tensor([r[1] for r in rows])
        self.rewards, self.discounts = torch.tensor(rewards), torch.tensor(discounts)
        self.next_rows = torch.tensor(next_rows)

    def iterate(self, logits: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """One sweep of the per-token soft Bellman backup (target network = current table, τ = 1)."""
        d = self.row_decision
        values = soft_values(logits[d], self.ref_logits[d], q[d], BETA)
        targets = soft_bellman_targets(values, self.rewards, self.discounts, self.next_rows)
        new_q = torch.zeros_like(q)
        new_q[d, self.row_token] = targets
        return new_q

    def action_level(self, policy_logits: torch.Tensor, state: str, rewards_of) -> float:
        """Closed-form action-level soft value Σ_a π(a)·Q(a) − β·KL(π‖π_ref)(s) of one env state."""
        value = 0.0
        for a in itertools.product(range(V), repeat=2):
            roots, second = self.index[(state, ())], self.index[(state, (a[0],))]
            logp = (
                torch.log_softmax(policy_logits[roots], -1)[a[0]] + torch.log_softmax(policy_logits[second], -1)[a[1]]
            )
            ref = (
                torch.log_softmax(self.ref_logits[roots], -1)[a[0]]
                + torch.log_softmax(self.ref_logits[second], -1)[a[1]]
            )
            value += float(logp.exp() * (rewards_of(a) - BETA * (logp - ref)))
        return value


def test_soft_bellman_converges_to_action_level_soft_values():
    mdp = TinyTokenMDP()
    q = torch.zeros(len(mdp.decisions), V)
    for _ in range(6):  # horizon of 4 tokens: exact after 4 sweeps
        q = mdp.iterate(mdp.logits, q)
    v1 = {s: mdp.action_level(mdp.logits, f"s1_{s}", lambda a, s=s: mdp.r1[(s, a)]) for s in (0, 1)}
    q0 = {a: mdp.r0[a] + GAMMA * v1[a[0]] for a in mdp.r0}
    v0 = mdp.action_level(mdp.logits, "s0", lambda a: q0[a])
    # Token-level Q of the last token equals the action-level soft Q of the whole action.
    for a, expected in q0.items():
        assert q[mdp.index[("s0", (a[0],))], a[1]] == pytest.approx(expected, abs=1e-5)
    for s, a in mdp.r1:
        assert q[mdp.index[(f"s1_{s}", (a[0],))], a[1]] == pytest.approx(mdp.r1[(s, a)], abs=1e-5)
    # The token-level soft value at the root equals the action-level soft value (KL chain rule).
    roots = torch.tensor([mdp.index[(s, ())] for s in mdp.env_states])
    values = soft_values(mdp.logits[roots], mdp.ref_logits[roots], q[roots], BETA)
    assert values.tolist() == pytest.approx([v0, v1[0], v1[1]], abs=1e-5)


def test_soft_policy_iteration_reaches_closed_form_optimum():
    """Alternating the backup with π ← π_ref·exp(Q/β)/Z gives V*(s) = β log Σ_a π_ref(a|s) exp(Q*(s,a)/β)."""
    mdp = TinyTokenMDP(seed=1)
    q, logits = torch.zeros(len(mdp.decisions), V), mdp.logits.clone()
    for _ in range(10):
        q = mdp.iterate(logits, q)
        logits = torch.log_softmax(mdp.ref_logits, -1) + q / BETA  # the policy step's minimiser

    def optimal(state: str, rewards_of) -> float:
        terms = []
        for a in itertools.product(range(V), repeat=2):
            ref = torch.log_softmax(mdp.ref_logits[mdp.index[(state, ())]], -1)[a[0]]
            ref = ref + torch.log_softmax(mdp.ref_logits[mdp.index[(state, (a[0],))]], -1)[a[1]]
            terms.append(ref + rewards_of(a) / BETA)
        return BETA * float(torch.logsumexp(torch.stack(terms), 0))

    v1 = {s: optimal(f"s1_{s}", lambda a, s=s: mdp.r1[(s, a)]) for s in (0, 1)}
    v0 = optimal("s0", lambda a: mdp.r0[a] + GAMMA * v1[a[0]])
    roots = torch.tensor([mdp.index[(s, ())] for s in mdp.env_states])
    values = soft_values(logits[roots], mdp.ref_logits[roots], q[roots], BETA)
    assert values.tolist() == pytest.approx([v0, v1[0], v1[1]], abs=1e-4)


def test_policy_step_converges_to_boltzmann_of_q():
    g = torch.Generator().manual_seed(0)
    num_rows, vocab, beta = 4, 5, 0.3
    q, ref_logits = torch.randn(num_rows, vocab, generator=g), torch.randn(num_rows, vocab, generator=g)
    logits = torch.zeros(num_rows, vocab, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=0.1)
    mask = torch.ones(num_rows, dtype=torch.bool)
    for _ in range(600):
        loss, _ = policy_loss(logits, ref_logits, q, beta, mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    expected = torch.softmax(torch.log_softmax(ref_logits, -1) + q / beta, -1)
    torch.testing.assert_close(torch.softmax(logits, -1), expected, atol=2e-3, rtol=0)


def test_official_loss_gradient_ignores_q():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, generator=g, requires_grad=True)
    ref_logits, mask = torch.randn(3, 4, generator=g), torch.ones(3, dtype=torch.bool)
    grads = []
    for q in (torch.zeros(3, 4), torch.randn(3, 4, generator=g) * 10):
        loss, _ = policy_loss(logits, ref_logits, q, 0.5, mask, kind="official")
        grads.append(torch.autograd.grad(loss, logits)[0])
    torch.testing.assert_close(grads[0], grads[1])
    exact = [torch.autograd.grad(policy_loss(logits, ref_logits, q, 0.5, mask)[0], logits)[0] for q in (
        torch.zeros(3, 4), torch.ones(3, 4) * torch.arange(4.0))]  # fmt: skip
    assert not torch.allclose(exact[0], exact[1])


def test_targets_match_loop_reference():
    g = torch.Generator().manual_seed(3)
    num_rows = 50
    values, rewards = torch.randn(num_rows, generator=g), torch.randn(num_rows, generator=g)
    discounts = torch.rand(num_rows, generator=g)
    next_rows = torch.randint(-1, num_rows, (num_rows,), generator=g)
    expected = [
        float(rewards[r]) + (float(discounts[r] * values[next_rows[r]]) if next_rows[r] >= 0 else 0.0)
        for r in range(num_rows)
    ]
    assert soft_bellman_targets(values, rewards, discounts, next_rows).tolist() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "td_lambda, expected",
    [
        (0.0, [0.5, 0.7, 0.8, -1 + 0.9 * 0.2, 0.0]),  # one-step: the next token's soft value
        (1.0, [0.8 - 0.04 - 0.02, 0.8 - 0.04, 0.8, -1 + 0.9 * 0.2, 0.0]),  # the sampled soft return
        (0.5, [0.5 * 0.5 + 0.5 * (0.73 - 0.02), 0.5 * 0.7 + 0.5 * (0.8 - 0.04), 0.8, -1 + 0.9 * 0.2, 0.0]),
    ],
)
def test_lambda_targets_hand_computed(td_lambda, expected):
    """Rows 0-2: a 3-token action, terminated with reward 0.8. Row 3: a failed 1-token action (reward -1, γ = 0.9)
    whose next state is the bootstrap row 4: λ never reaches across an action's end."""
    values = torch.tensor([0.3, 0.5, 0.7, 0.4, 0.2])
    taken_kl = torch.tensor([0.01, 0.02, 0.04, 0.05, 0.0])
    rewards = torch.tensor([0.0, 0.0, 0.8, -1.0, 0.0])
    discounts = torch.tensor([1.0, 1.0, 0.0, 0.9, 0.0])
    next_rows = torch.tensor([1, 2, -1, 4, -1])
    is_last = torch.tensor([False, False, True, True, False])
    targets = soft_lambda_targets(values, taken_kl, rewards, discounts, next_rows, is_last, td_lambda)
    assert targets.tolist() == pytest.approx(expected, abs=1e-6)


def test_lambda_zero_is_the_one_step_backup():
    g = torch.Generator().manual_seed(4)
    values, rewards, kl = (torch.randn(30, generator=g) for _ in range(3))
    discounts, next_rows = torch.rand(30, generator=g), torch.randint(-1, 30, (30,), generator=g)
    is_last = torch.rand(30, generator=g) < 0.3
    one_step = soft_bellman_targets(values, rewards, discounts, next_rows)
    assert torch.equal(soft_lambda_targets(values, kl, rewards, discounts, next_rows, is_last, 0.0), one_step)


def test_conservative_loss_value_and_gradient_are_closed_form():
    """L_C = β·log Σ_w π_ref(w)·exp(Q(w)/β) − Q(w_taken); ∂L_C/∂Q = π* − onehot(taken), π* ∝ π_ref·exp(Q/β)."""
    beta = 0.5
    ref_probs = torch.tensor([[0.5, 0.3, 0.2]])
    q = torch.tensor([[0.0, 1.0, -1.0]], requires_grad=True)
    loss, metrics = conservative_loss(q, ref_probs.log(), torch.tensor([0]), beta, torch.tensor([True]))
    weights = [0.5 * 1.0, 0.3 * torch.e**2, 0.2 * torch.e**-2]  # π_ref(w)·exp(Q(w)/β)
    assert float(loss) == pytest.approx(beta * torch.tensor(sum(weights)).log().item() - 0.0, rel=1e-6)
    assert metrics["conservative_loss"] == pytest.approx(float(loss))
    loss.backward()
    optimal = torch.tensor(weights) / sum(weights)
    torch.testing.assert_close(q.grad[0], optimal - torch.tensor([1.0, 0.0, 0.0]))


def test_conservative_loss_has_zero_expected_gradient_when_tokens_come_from_pi_star():
    beta = 0.3
    ref_logits = torch.tensor([[0.2, -0.4, 1.0, 0.0]])
    q = torch.tensor([[0.3, -0.2, 0.1, 0.5]], requires_grad=True)
    optimal = torch.softmax(ref_logits.log_softmax(-1) + q.detach() / beta, -1)[0]
    expected = torch.zeros(4)
    for token in range(4):  # E_{w ~ π*}[∇ L_C(w)]
        q.grad = None
        loss, _ = conservative_loss(q, ref_logits, torch.tensor([token]), beta, torch.tensor([True]))
        loss.backward()
        expected += optimal[token] * q.grad[0]
    torch.testing.assert_close(expected, torch.zeros(4), atol=1e-6, rtol=0)


def test_critic_loss_is_masked_squared_error():
    q_taken, targets = torch.tensor([1.0, 2.0, 5.0]), torch.tensor([0.0, 0.0, 0.0])
    loss, metrics = critic_loss(q_taken, targets, torch.tensor([True, True, False]))
    assert float(loss) == pytest.approx(2.5)
    assert metrics["td_error"] == pytest.approx(1.5)


def test_polyak_update_is_a_lerp_of_the_head():
    """Q̄ ← (1 − τ)·Q̄ + τ·Q, on the target head only."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from etpo_agents.policy import Policy

    config = LlamaConfig(vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2)  # fmt: skip
    policy = Policy(LlamaForCausalLM(config), None, q_head=True, device="cpu")
    with torch.no_grad():
        policy.q_head.weight.fill_(1.0)
        policy.target_q_head.weight.fill_(3.0)
    policy.polyak_update(0.25)
    assert torch.allclose(policy.target_q_head.weight, torch.full_like(policy.target_q_head.weight, 2.5))
    assert torch.equal(policy.q_head.weight, torch.ones_like(policy.q_head.weight))


def test_polyak_update_covers_every_parameter_the_target_reads():
    """The dueling target Q̄ reads the advantage head AND the V(x) head: both are averaged, nothing else."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from etpo_agents.policy import Policy

    config = LlamaConfig(vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2)  # fmt: skip
    policy = Policy(LlamaForCausalLM(config), None, q_head=True, device="cpu")
    with torch.no_grad():
        for param in [*policy.q_head.parameters(), *policy.q_value_head.parameters()]:
            param.fill_(1.0)
    policy.polyak_update(0.25)
    targets = [*policy.target_q_head.parameters(), *policy.target_q_value_head.parameters()]
    assert len(targets) == 3 and all(torch.allclose(t, torch.full_like(t, 0.25)) for t in targets)
    hidden, logits = torch.randn(4, 8), torch.randn(4, 16)
    expected = 0.25 * policy.q_values(hidden, logits)  # every parameter scaled by τ, Q is linear in them
    torch.testing.assert_close(policy.q_values(hidden, logits, target=True), expected)
