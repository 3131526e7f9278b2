import torch

from lethe.unlearn.sage import retain_bias, sanitize_matrix


def test_shrinks_only_the_retain_direction():
    A = torch.eye(3, dtype=torch.float64)
    C_r = torch.zeros(3, 3, dtype=torch.float64)
    C_r[0, 0] = 1.0
    A_new = sanitize_matrix(A, C_r, None, lam=9.0, mu=0.0)
    assert torch.allclose(A_new, torch.diag(torch.tensor([0.1, 1.0, 1.0], dtype=torch.float64)))


def test_forget_directions_are_protected():
    A = torch.eye(2, dtype=torch.float64)
    C = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    shrunk = sanitize_matrix(A, C, None, lam=9.0, mu=0.0)[0, 0]
    protected = sanitize_matrix(A, C, C, lam=9.0, mu=9.0)[0, 0]  # same direction is also a forget direction
    assert protected > shrunk and torch.isclose(protected, torch.tensor(10 / 19, dtype=torch.float64))


def test_retain_bias_matches_explicit_activations():
    torch.manual_seed(0)
    X = torch.randn(5, 40, dtype=torch.float64)
    delta, W0 = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    explicit = (delta @ X).norm() / (W0 @ X).norm()
    assert abs(retain_bias(delta, W0, X @ X.T) - float(explicit)) < 1e-9
