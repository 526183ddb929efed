"""RFC 6962 Merkle hashing and proofs, checked against Certificate Transparency's published
reference vectors and exhaustively over small trees (every shape of the recursion)."""

from __future__ import annotations

import itertools

import pytest

from audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    tree_root,
    verify_consistency,
    verify_inclusion,
)

# The eight reference inputs and the tree heads of sizes 0..8 (RFC 6962 test data, as used
# by every Certificate Transparency implementation).
INPUTS = [
    bytes.fromhex(h)
    for h in (
        *("", "00", "10", "2021", "3031", "40414243"),
        *("5051525354555657", "606162636465666768696a6b6c6d6e6f"),
    )
]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
LEAVES = [leaf_hash(data) for data in INPUTS]
INCLUSION = [  # (leaf index, tree size, audit path)
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]  # fmt: skip
CONSISTENCY = [  # (old size, new size, proof)
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]  # fmt: skip


def test_roots_match_the_reference_tree_heads() -> None:
    assert EMPTY_ROOT.hex() == ROOTS[0]
    for size in range(9):
        assert tree_root(LEAVES[:size]).hex() == ROOTS[size], size


def test_the_frontier_grows_to_the_same_roots() -> None:
    frontier = Frontier()
    assert frontier.root().hex() == ROOTS[0]
    for size, leaf in enumerate(LEAVES, start=1):
        frontier.append(leaf)
        assert frontier.is_well_formed()
        assert frontier.root().hex() == ROOTS[size]
        restored = Frontier.from_hex(frontier.size, frontier.to_hex())
        assert restored.root() == frontier.root()


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_inclusion_proofs_match_the_reference(index: int, size: int, path: list[str]) -> None:
    proof = inclusion_proof(index, LEAVES[:size])
    assert [p.hex() for p in proof] == path
    root = bytes.fromhex(ROOTS[size])
    assert verify_inclusion(index, size, LEAVES[index], proof, root)
    assert not verify_inclusion(index, size, LEAVES[index], proof, bytes.fromhex(ROOTS[0]))


@pytest.mark.parametrize(("old", "new", "path"), CONSISTENCY)
def test_consistency_proofs_match_the_reference(old: int, new: int, path: list[str]) -> None:
    proof = consistency_proof(old, LEAVES[:new])
    assert [p.hex() for p in proof] == path
    old_root, new_root = bytes.fromhex(ROOTS[old]), bytes.fromhex(ROOTS[new])
    assert verify_consistency(old, new, old_root, new_root, proof)


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def test_every_inclusion_proof_verifies_and_no_wrong_one_does() -> None:
    for size in range(1, 34):
        leaves = _leaves(size)
        root = tree_root(leaves)
        for index in range(size):
            proof = inclusion_proof(index, leaves)
            assert verify_inclusion(index, size, leaves[index], proof, root)
            other = leaves[(index + 1) % size]
            if other != leaves[index]:
                assert not verify_inclusion(index, size, other, proof, root)
            if size > 1:
                assert not verify_inclusion((index + 1) % size, size, leaves[index], proof, root)


def test_every_consistency_proof_verifies_and_a_rewritten_history_does_not() -> None:
    leaves = _leaves(33)
    roots = {n: tree_root(leaves[:n]) for n in range(1, 34)}
    for old, new in itertools.combinations_with_replacement(range(1, 34), 2):
        proof = consistency_proof(old, leaves[:new])
        assert verify_consistency(old, new, roots[old], roots[new], proof), (old, new)
        # The same new tree cannot be shown to extend a different old tree.
        rewritten = tree_root([leaf_hash(b"forged"), *leaves[1:old]])
        assert not verify_consistency(old, new, rewritten, roots[new], proof), (old, new)


def test_leaves_and_nodes_are_domain_separated() -> None:
    """A node cannot be presented as a leaf: the 0x00/0x01 prefixes differ."""
    two = tree_root(LEAVES[:2])
    assert leaf_hash(LEAVES[0] + LEAVES[1]) != two
