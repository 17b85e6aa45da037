"""attn.Tensor: zero-copy views of NumPy and torch memory both ways, lifetimes,
reference counts and the errors bad input gets."""
import gc
import sys
import weakref

import numpy as np
import pytest
import torch
from torch.utils import dlpack

import attn


def test_numpy_view_shares_memory_both_ways():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = attn.Tensor(a)
    assert t.shape == (3, 4) and t.dtype == "float32" and t.stride() == (4, 1)
    a[1, 2] = 100.0
    assert t.numpy()[1, 2] == 100.0
    back = t.numpy()
    back[0, 0] = -7.0
    assert a[0, 0] == -7.0
    assert np.shares_memory(back, a)


@pytest.mark.parametrize("dtype,name", [(np.float32, "float32"), (np.float64, "float64"), (np.int64, "int64"),
                                        (np.bool_, "bool")])
def test_numpy_dtypes(dtype, name):
    a = (np.arange(6) % 2).astype(dtype).reshape(2, 3)
    t = attn.from_numpy(a)
    assert t.dtype == name
    np.testing.assert_array_equal(t.numpy(), a)
    assert np.shares_memory(t.numpy(), a)


def test_non_contiguous_numpy_views_keep_their_strides():
    a = np.random.rand(4, 6).astype(np.float32)
    t = attn.Tensor(a.T)
    assert t.shape == (6, 4) and t.stride() == (1, 6) and not t.is_contiguous()
    np.testing.assert_array_equal(np.asarray(t), a.T)
    s = attn.Tensor(a[:, ::2])
    assert s.stride() == (6, 2)
    np.testing.assert_array_equal(s.numpy(), a[:, ::2])
    # attn computes on the strided view directly
    np.testing.assert_allclose((s * 2.0).numpy(), a[:, ::2] * 2.0)


def test_torch_dlpack_shares_memory_both_ways():
    x = torch.randn(2, 3, 4)
    t = attn.from_dlpack(x)
    assert t.shape == (2, 3, 4)
    x[0, 0, 0] = 42.0
    assert t.numpy()[0, 0, 0] == 42.0
    y = dlpack.from_dlpack(t)
    assert y.data_ptr() == x.data_ptr()
    y[1, 2, 3] = -1.0
    assert x[1, 2, 3] == -1.0
    # strided torch views
    tt = attn.Tensor(x.transpose(0, 2))
    assert tt.shape == (4, 3, 2) and tt.stride() == tuple(x.transpose(0, 2).stride())
    np.testing.assert_array_equal(tt.numpy(), x.transpose(0, 2).numpy())
    # torch.utils.dlpack capsules and float64/int64/bool/bfloat16 sources
    assert attn.from_dlpack(dlpack.to_dlpack(x)).shape == (2, 3, 4)
    for src, name in [(torch.zeros(3, dtype=torch.float64), "float64"), (torch.arange(3), "int64"),
                      (torch.tensor([True, False]), "bool"), (torch.zeros(2, dtype=torch.bfloat16), "bfloat16")]:
        assert attn.Tensor(src).dtype == name


def test_torch_tensor_requiring_grad_is_viewed_through_its_detached_alias():
    x = torch.randn(3, requires_grad=True)
    t = attn.Tensor(x)
    assert not t.requires_grad
    np.testing.assert_array_equal(t.numpy(), x.detach().numpy())


def test_zero_size_and_zero_dim():
    e = attn.Tensor(np.zeros((0, 5), np.float32))
    assert e.shape == (0, 5) and e.numel() == 0
    assert e.numpy().shape == (0, 5)
    assert dlpack.from_dlpack(e).shape == (0, 5)
    s = attn.Tensor(np.array(3.5, np.float32))
    assert s.shape == () and s.item() == 3.5
    z = attn.Tensor(torch.zeros(0, 3))
    assert z.shape == (0, 3)


def test_the_source_outlives_its_python_name():
    a = np.arange(1000, dtype=np.float32)
    t = attn.Tensor(a)
    del a
    gc.collect()
    assert t.numpy()[999] == 999.0
    x = torch.arange(50, dtype=torch.float32)
    u = attn.Tensor(x)
    del x
    gc.collect()
    assert float((u * 1.0).sum().item()) == sum(range(50))
    # and attn memory outlives the attn tensor when NumPy or torch holds it
    v = attn.ones(4, 4)
    arr, tor = v.numpy(), dlpack.from_dlpack(v)
    del v
    gc.collect()
    assert arr.sum() == 16.0 and float(tor.sum()) == 16.0


def test_reference_counts_do_not_leak():
    a = np.zeros((8, 8), np.float32)
    before = sys.getrefcount(a)
    for _ in range(100):
        t = attn.Tensor(a)
        (t + 1.0).numpy()
        del t
    gc.collect()
    assert sys.getrefcount(a) == before
    x = torch.zeros(8, 8)
    ref = weakref.ref(x)
    views = [attn.Tensor(x) for _ in range(10)]
    del x
    gc.collect()
    assert ref() is not None  # the views keep the storage alive (torch tensors hold it)
    del views
    gc.collect()
    assert ref() is None
    # attn -> numpy: the array holds attn's tensor, releasing it when it goes
    arrays = [attn.zeros(16).numpy() for _ in range(100)]
    del arrays
    gc.collect()


def test_unsupported_dtypes_raise_type_error():
    with pytest.raises(TypeError, match="format 'i'"):
        attn.Tensor(np.zeros(3, np.int32))
    with pytest.raises(TypeError, match="format 'e'"):
        attn.Tensor(np.zeros(3, np.float16))
    with pytest.raises(TypeError, match="DLPack dtype"):
        attn.Tensor(torch.zeros(3, dtype=torch.int32))
    with pytest.raises(TypeError, match="expected a tensor"):
        attn.Tensor([1.0, 2.0])
    with pytest.raises(TypeError, match="got None"):
        attn.Tensor(None)
    with pytest.raises(TypeError, match="bfloat16"):
        attn.Tensor(torch.zeros(2, dtype=torch.bfloat16)).numpy()


def test_negative_strides_raise_value_error():
    a = np.arange(10, dtype=np.float32)
    with pytest.raises(ValueError, match="non-negative strides"):
        attn.Tensor(a[::-1])


class _FakeCuda:
    """Stands in for a CUDA tensor (this machine has no GPU)."""

    def __dlpack_device__(self):
        return (2, 0)

    def __dlpack__(self, stream=None):
        raise AssertionError("must not be asked for its data")


def test_a_device_other_than_the_cpu_raises_type_error():
    with pytest.raises(TypeError, match="cuda:0"):
        attn.from_dlpack(_FakeCuda())
    with pytest.raises(TypeError, match="cuda:0"):
        attn.functional.scaled_dot_product_attention(_FakeCuda(), _FakeCuda(), _FakeCuda())


def test_a_consumed_capsule_is_refused():
    cap = dlpack.to_dlpack(torch.zeros(2))
    attn.from_dlpack(cap)
    with pytest.raises(TypeError, match="consumed"):
        attn.from_dlpack(cap)


def test_attn_errors_carry_attn_messages():
    q = attn.Tensor(np.zeros((1, 2, 4, 8), np.float32))
    k = attn.Tensor(np.zeros((1, 2, 4, 6), np.float32))
    with pytest.raises(attn.Error, match="last dims"):
        attn.functional.scaled_dot_product_attention(q, k, k)
    assert issubclass(attn.Error, ValueError)
    with pytest.raises(ValueError, match="scaled_dot_product_attention"):
        attn.functional.scaled_dot_product_attention(q, q, q, attn_mask=np.zeros((3, 3), np.float32))


def test_autograd_from_python():
    x = attn.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.array([[1.0, 2.0], [3.0, 4.0]]))
    (g,) = attn.autograd.grad([(x * 3.0).sum()], [x])
    np.testing.assert_allclose(g.numpy(), np.full((2, 2), 3.0))
    with attn.no_grad():
        assert not (x * 2.0).requires_grad
    assert attn.is_grad_enabled()


def test_tensor_factories_and_arithmetic():
    assert attn.zeros(2, 3).shape == (2, 3)
    assert attn.ones((4,), dtype="float64").dtype == "float64"
    a = attn.tensor([1.0, 2.0])
    np.testing.assert_allclose((1.0 - a).numpy(), [0.0, -1.0])
    np.testing.assert_allclose((a / 2.0 + a @ a).numpy(), [5.5, 6.0])
    assert attn.randn(3, 5, generator=attn.Generator(1)).numpy().tolist() == \
        attn.randn(3, 5, generator=attn.Generator(1)).numpy().tolist()
