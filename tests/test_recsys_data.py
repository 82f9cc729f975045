"""Recommender data: reading interaction files, the paper's implicit filter, the strong-generalisation split and
the MovieLens datasets (the real ML-100k in ../shared/data; downloads from a real HTTP server on loopback).

References are independent: plain-Python parses of the same files, dict/set brute force of the filter and of
the split's invariants, hand-written files whose content is the expected value."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import re
import socket
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from http_helpers import FileHandler, serve
from scipy import sparse

from vaekit.data.config import DATASETS, DataConfig
from vaekit.errors import VaekitError
from vaekit.recsys import movielens as ml
from vaekit.recsys.interactions import Interactions, implicit, read_interactions
from vaekit.recsys.split import RecData, split_users

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ML100K = SHARED / "movielens-100k"
needs_ml100k = pytest.mark.skipif(not (ML100K / "u.data").is_file(), reason=f"ML-100k not found at {ML100K}")


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def _events(inter: Interactions) -> list[tuple]:
    cols = [inter.users.tolist(), inter.items.tolist()]
    if inter.ratings is not None:
        cols.append(inter.ratings.tolist())
    if inter.timestamps is not None:
        cols.append(inter.timestamps.tolist())
    return list(zip(*cols, strict=True))


def _rows(m: sparse.csr_matrix, users: np.ndarray, items: np.ndarray) -> dict:
    """{user id: set of item ids} of a split's matrix (and every stored value must be 1.0)."""
    assert m.dtype == np.float32 and np.all(m.data == 1.0)
    return {u: {items[j] for j in m.indices[m.indptr[i]:m.indptr[i + 1]]} for i, u in enumerate(users.tolist())}


# ---------------------------------------------------------------------------------------- the real ML-100k

@pytest.fixture(scope="module")
def ml100k_reference() -> dict:
    """u.data parsed with plain Python, and the paper's filter done with dicts and sets."""
    rows = [tuple(int(v) for v in line.split("\t")) for line in (ML100K / "u.data").read_text().splitlines()]
    liked: dict[int, set[int]] = defaultdict(set)
    for u, i, r, _ in rows:
        if r > 3.5:
            liked[u].add(i)
    kept = {u: s for u, s in liked.items() if len(s) >= 5}
    return {"rows": rows, "kept": kept}


@needs_ml100k
def test_ml100k_read_matches_a_plain_python_parse(ml100k_reference: dict) -> None:
    inter, titles = ml.load_movielens("movielens-100k", str(SHARED), download=False)
    assert inter.users.dtype == np.int64 and inter.items.dtype == np.int64
    assert inter.ratings is not None and inter.ratings.dtype == np.float32
    assert inter.timestamps is not None and inter.timestamps.dtype == np.int64
    assert _events(inter) == [(u, i, float(r), t) for u, i, r, t in ml100k_reference["rows"]]
    # the published facts of the dataset (its README and /work/shared/data/README.md)
    assert len(inter) == 100_000 and len(set(inter.users.tolist())) == 943 and len(titles) == 1682
    assert inter.source == str((ML100K / "u.data").resolve())
    files = inter.info["dataset"]["files"]
    assert files["u.data"]["sha256_matches_published"] and files["u.item"]["sha256_matches_published"]
    plain = {int(line.split("|")[0]): line.split("|")[1].strip()
             for line in (ML100K / "u.item").read_text(encoding="latin-1").splitlines()}
    assert titles == plain


@needs_ml100k
def test_ml100k_implicit_filter_matches_dicts_and_sets(ml100k_reference: dict) -> None:
    inter = implicit(ml.load_movielens("movielens-100k", str(SHARED), download=False)[0])
    kept = ml100k_reference["kept"]
    expected = sorted((u, i) for u, s in kept.items() for i in s)
    assert list(zip(inter.users.tolist(), inter.items.tolist(), strict=True)) == expected
    stats = inter.info["implicit"]
    assert stats["events_out"] == len(expected) and stats["users_kept"] == len(kept)
    assert stats["events_rated_above"] == sum(r > 3.5 for _, _, r, _ in ml100k_reference["rows"])
    assert stats["items_out"] == len({i for s in kept.values() for i in s})
    assert inter.ratings is not None and set(inter.ratings.tolist()) <= {4.0, 5.0}


def _check_split(d: RecData, inter: Interactions, fraction: float) -> None:
    """Every invariant of the strong-generalisation split, checked with sets against the events."""
    events: dict = defaultdict(set)
    for u, i in zip(inter.users.tolist(), inter.items.tolist(), strict=True):
        events[u].add(i)
    train, val, test = (set(d.train_users.tolist()), set(d.val_users.tolist()), set(d.test_users.tolist()))
    assert not (train & val) and not (train & test) and not (val & test)  # no user in two splits
    assert train | val | test <= set(events)
    train_items = {i for u in train for i in events[u]}
    assert set(d.items.tolist()) == train_items and list(d.items) == sorted(train_items)
    assert d.train.shape == (len(train), len(d.items))
    assert _rows(d.train, d.train_users, d.items) == {u: events[u] for u in d.train_users.tolist()}
    for name, users in (("val", d.val_users), ("test", d.test_users)):
        fold_in = _rows(getattr(d, f"{name}_in"), users, d.items)
        out = _rows(getattr(d, f"{name}_out"), users, d.items)
        dropped = 0
        for u in users.tolist():
            known = events[u] & train_items
            dropped += len(events[u]) - len(known)
            assert fold_in[u] and out[u] and not (fold_in[u] & out[u])  # non-empty, disjoint
            assert fold_in[u] | out[u] == known
            assert len(out[u]) == max(1, int(fraction * len(known)))  # the paper's int(0.2 n), at least one
        info = d.info[name]
        assert info["users"] == len(users) and info["fold_in"] + info["to_predict"] == sum(
            len(events[u] & train_items) for u in users.tolist())
        assert info["events_dropped_unseen_items"] >= dropped


@needs_ml100k
def test_ml100k_split_invariants_and_sizes(ml100k_reference: dict) -> None:
    inter = implicit(ml.load_movielens("movielens-100k", str(SHARED), download=False)[0])
    d = split_users(inter, seed=0)
    _check_split(d, inter, 0.2)
    n_users = len(ml100k_reference["kept"])
    h = max(1, round(0.1 * n_users))
    assert d.info["heldout_users"] == h and len(d.train_users) == n_users - 2 * h
    kept = ml100k_reference["kept"]
    train_items = {i for u in d.train_users.tolist() for i in kept[u]}
    for name, users in (("val", d.val_users), ("test", d.test_users)):
        assert d.info[name]["users_drawn"] == h
        drawn_dropped = d.info[name]["users_dropped"]
        assert len(users) == h - drawn_dropped
        unseen = sum(len(kept[u] - train_items) for u in users.tolist())
        assert d.info[name]["events_dropped_unseen_items"] >= unseen


@needs_ml100k
def test_split_is_a_pure_function_of_its_arguments() -> None:
    inter = implicit(ml.load_movielens("movielens-100k", str(SHARED), download=False)[0])
    a, b = split_users(inter, 50, 0.2, seed=7), split_users(inter, 50, 0.2, seed=7)
    perm = np.random.default_rng(1).permutation(len(inter))  # the same events in another order, plus repeats
    rows = np.concatenate([perm, perm[:500]])
    shuffled = Interactions(inter.users[rows], inter.items[rows], None, None, inter.source)
    c = split_users(shuffled, 50, 0.2, seed=7)
    assert c.info["duplicate_pairs"] == 500
    for other in (b, c):
        for key in ("items", "train_users", "val_users", "test_users"):
            np.testing.assert_array_equal(getattr(a, key), getattr(other, key))
        for key in ("train", "val_in", "val_out", "test_in", "test_out"):
            assert (getattr(a, key) != getattr(other, key)).nnz == 0
    d = split_users(inter, 50, 0.2, seed=8)
    assert set(d.val_users.tolist()) != set(a.val_users.tolist())


def test_fold_in_draw_is_uniform_within_a_user() -> None:
    """Each of a held-out user's n events is to-predict with probability int(f n) / n, over seeds."""
    users = np.repeat(np.arange(4), 10)
    items = np.tile(np.arange(10), 4)
    inter = Interactions(users, items, None, None, "<memory>")
    counts, times = np.zeros(10), 0
    for seed in range(400):
        d = split_users(inter, heldout_users=1, holdout_fraction=0.3, seed=seed)
        counts += d.val_out.toarray()[0]
        times += 1
    p = 3 / 10
    se = math.sqrt(p * (1 - p) / times)
    assert np.all(np.abs(counts / times - p) < 5 * se)  # five standard errors: fails by chance < 1e-5


def test_split_of_small_held_out_users_and_unseen_items() -> None:
    """Held-out events on items no training user has are dropped and counted; a held-out user left with fewer
    than 2 events is dropped and counted; users with 2..4 events still get one event to predict."""
    pairs = [(u, i) for u in range(12) for i in range(6)]
    pairs += [(12, 6), (12, 7), (12, 0), (13, 1), (13, 2), (14, 3), (15, 8), (15, 9)]
    users, items = (np.array(c) for c in zip(*pairs, strict=True))
    inter = Interactions(users, items, None, None, "<memory>")
    events: dict = defaultdict(set)
    for u, i in pairs:
        events[u].add(i)
    done = dropped_seen = 0
    for seed in range(40):
        try:
            d = split_users(inter, heldout_users=4, seed=seed)
        except VaekitError as err:  # every user of one held-out split was unusable
            assert re.search(r"no (val|test) user has 2 or more events on items of the training users", str(err))
            continue
        _check_split(d, inter, 0.2)
        train_items = {i for u in d.train_users.tolist() for i in events[u]}
        kept = set(d.train_users.tolist()) | set(d.val_users.tolist()) | set(d.test_users.tolist())
        dropped = set(range(16)) - kept
        assert all(len(events[u] & train_items) < 2 for u in dropped)
        assert d.info["val"]["users_dropped"] + d.info["test"]["users_dropped"] == len(dropped)
        assert len(d.train_users) == 8 and d.info["val"]["users_drawn"] == d.info["test"]["users_drawn"] == 4
        done += 1
        dropped_seen += len(dropped)
    assert done >= 30 and dropped_seen > 0
    with pytest.raises(VaekitError, match=r"no (val|test) user has 2 or more events"):
        split_users(Interactions(np.array([0, 0, 1, 2]), np.array([0, 1, 0, 5]), None, None, "x"), 1)


def test_split_bad_arguments_are_one_line_errors() -> None:
    inter = Interactions(np.arange(10).repeat(3), np.tile(np.arange(3), 10), None, None, "/data/x.csv")
    with pytest.raises(VaekitError, match=r"10 users cannot give 5 validation and 5 test users.*heldout_users"):
        split_users(inter, heldout_users=5)
    for fraction in (0.0, 1.0, -0.1):
        with pytest.raises(VaekitError, match=r"holdout_fraction must be in \(0, 1\)"):
            split_users(inter, holdout_fraction=fraction)
    with pytest.raises(VaekitError, match=r"heldout_users must be >= 0"):
        split_users(inter, heldout_users=-1)


def test_split_memory_grows_with_events_not_users_times_items() -> None:
    """Ids up to 10**12 and 10**9: a dense users x items array would need ~10**17 bytes; the split is
    built from the 3,000 events alone."""
    rng = np.random.default_rng(0)
    users = rng.choice(10**12, 300, replace=False).repeat(10)
    items = rng.choice(10**9, 200, replace=False)[rng.integers(0, 200, 3000)]
    d = split_users(Interactions(users, items, None, None, "<memory>"), seed=3)
    assert d.train.shape[1] == len(d.items) <= 200
    _check_split(d, Interactions(users, items, None, None, "<memory>"), 0.2)


# ---------------------------------------------------------------------------------------- the filter

def test_implicit_against_brute_force_on_random_logs() -> None:
    rng = np.random.default_rng(5)
    for trial in range(5):
        m = 3000
        users = rng.integers(0, 80, m) * 7 + 1000  # sparse, offset ids
        items = rng.integers(0, 60, m)
        ratings = rng.integers(1, 11, m).astype(np.float32) / 2
        threshold, minimum = (3.5, 5) if trial % 2 == 0 else (2.0, 12)
        inter = Interactions(users, items, ratings, None, "<memory>")
        out = implicit(inter, threshold, minimum)
        first: dict = {}
        for k, (u, i, r) in enumerate(zip(users.tolist(), items.tolist(), ratings.tolist(), strict=True)):
            if r > threshold and (u, i) not in first:
                first[u, i] = k
        per_user: dict = defaultdict(int)
        for u, _ in first:
            per_user[u] += 1
        expected = sorted((u, i) for (u, i) in first if per_user[u] >= minimum)
        assert list(zip(out.users.tolist(), out.items.tolist(), strict=True)) == expected
        assert out.ratings is not None
        assert out.ratings.tolist() == [float(ratings[first[p]]) for p in expected]
        assert out.info["implicit"]["duplicate_pairs"] == sum(r > threshold for r in ratings.tolist()) - len(first)


def test_implicit_threshold_is_strict_and_without_ratings_keeps_everything(tmp_path: Path) -> None:
    f = _write(tmp_path / "r.csv", "user,item,rating\n" + "".join(
        f"a,{i},{r}\n" for i, r in enumerate([3.5, 4, 4, 5, 5, 5, 3.5])) + "".join(f"b,{i},4\n" for i in range(4)))
    out = implicit(read_interactions(f), 3.5, 5)
    assert out.users.tolist() == ["a"] * 5 and out.items.tolist() == [1, 2, 3, 4, 5]  # 3.5 is not > 3.5
    assert out.info["implicit"]["users_kept"] == 1  # b has 4 items, fewer than 5
    g = _write(tmp_path / "plain.csv", "user,item\n1,1\n1,2\n1,2\n2,1\n")
    kept = implicit(read_interactions(g), 3.5, 1)
    assert kept.ratings is None and list(zip(kept.users.tolist(), kept.items.tolist(), strict=True)) == [
        (1, 1), (1, 2), (2, 1)]
    with pytest.raises(VaekitError, match=r"no user has 5 or more items rated above 4.5.*--data.min_rating"):
        implicit(read_interactions(f), 4.5, 5)
    with pytest.raises(VaekitError, match=r"min_user_items must be >= 1"):
        implicit(read_interactions(f), 3.5, 0)


# ---------------------------------------------------------------------------------------- formats

def test_u_data_layout(tmp_path: Path) -> None:
    f = _write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n")
    inter = read_interactions(f)
    assert _events(inter) == [(196, 242, 3.0, 881250949), (186, 302, 3.0, 891717742), (22, 377, 1.0, 878887116)]
    assert inter.info["read"]["sep"] == "\t" and not inter.info["read"]["header"]


def test_ratings_dat_layout(tmp_path: Path) -> None:
    f = _write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1357::5::978298709\n")
    assert _events(read_interactions(f)) == [(1, 1193, 5.0, 978300760), (1, 661, 3.0, 978302109),
                                             (2, 1357, 5.0, 978298709)]


def test_ratings_csv_layout_with_blank_lines_and_crlf(tmp_path: Path) -> None:
    f = _write(tmp_path / "ratings.csv",
               "userId,movieId,rating,timestamp\r\n1,2,3.5,1112486027\r\n\r\n1,29,3.5,1112484676\r\n7,32,0.5,5\r\n")
    inter = read_interactions(f)
    assert _events(inter) == [(1, 2, 3.5, 1112486027), (1, 29, 3.5, 1112484676), (7, 32, 0.5, 5)]
    assert inter.info["read"]["blank_lines"] == 1 and inter.info["read"]["columns"]["item"] == "movieId"


def test_custom_tsv_with_named_columns_and_string_ids(tmp_path: Path) -> None:
    f = _write(tmp_path / "log.tsv", "session\tcustomer\tsku\tstars\twhen\n"
                                     "s1\tanna\tA-17\t4\t100\ns2\tbob\tB-2\t2.5\t90\ns3\tanna\tB-2\t5\t80\n")
    inter = read_interactions(f, user_column="customer", item_column="sku", rating_column="stars",
                              time_column="when")
    assert _events(inter) == [("anna", "A-17", 4.0, 100), ("bob", "B-2", 2.5, 90), ("anna", "B-2", 5.0, 80)]
    assert inter.users.dtype == object and inter.info["read"]["string_ids"]
    # ids of one column all integers: int64 for that column even when the other holds strings
    g = _write(tmp_path / "mixed.csv", 'user_id,item_id\n5,"x,1"\n6,y\n')
    mixed = read_interactions(g)
    assert mixed.users.dtype == np.int64 and mixed.items.tolist() == ["x,1", "y"] and mixed.ratings is None


def test_large_numeric_file_is_read_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunk boundaries (forced small) do not lose, repeat or misnumber lines; a bad line far down is named."""
    from vaekit.recsys import interactions as mod

    rng = np.random.default_rng(2)
    rows = [(int(u), int(i), float(r), int(t)) for u, i, r, t in zip(
        rng.integers(1, 500, 5000), rng.integers(1, 900, 5000), rng.integers(1, 11, 5000) / 2,
        rng.integers(10**9, 2 * 10**9, 5000), strict=True)]
    text = "userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},{r},{t}\n" for u, i, r, t in rows)
    monkeypatch.setattr(mod, "CHUNK_BYTES", 4096)
    assert _events(read_interactions(_write(tmp_path / "r.csv", text))) == rows
    lines = text.splitlines(keepends=True)
    lines[4321] = "5,6,four,7\n"
    with pytest.raises(VaekitError, match=r"line 4322: rating 'four'"):
        read_interactions(_write(tmp_path / "bad.csv", "".join(lines)))


@pytest.mark.parametrize(("name", "text", "kwargs", "pattern"), [
    ("empty.csv", "", {}, r"empty.csv: is empty"),
    ("header.csv", "user,item,rating\n", {}, r"header.csv: no interactions after the header"),
    ("nouser.csv", "customer,item\n1,2\n", {}, r"nouser.csv: no user column in the header \(customer, item\).*"
                                                r"--data.user_column"),
    ("named.csv", "user,item\n1,2\n", {"rating_column": "stars"},
     r"named.csv: no rating column 'stars' in the header \(user, item\).*--data.rating_column"),
    ("rating.dat", "1::2::5::9\n1::3::five::9\n", {}, r"rating.dat: line 2: rating 'five'.*--data.rating_column"),
    ("nan.csv", "user,item,rating\n1,2,4\n1,3,nan\n", {}, r"nan.csv: line 3: rating 'nan' .*not a finite"),
    ("ragged.tsv", "1\t2\t3\t4\n1\t2\t3\n", {}, r"ragged.tsv: line 2 has 3 fields .*expected 4.*fix or remove"),
    ("time.csv", "user,item,timestamp\n1,2,2020-01-01\n", {}, r"time.csv: line 2: timestamp '2020-01-01'.*unix"),
    ("noheader.tsv", "1\t2\t3\n", {"item_column": "movie"}, r"noheader.tsv: the file has no header line.*"
                                                              r"drop --data.item_column"),
    ("sep.txt", "1 2 3\n", {}, r"sep.txt: cannot tell the column separator from line 1"),
    ("blank.csv", "\nuser,item\n", {}, r"blank.csv: starts with a blank line"),
    ("emptyid.csv", "user,item\n1,\n", {}, r"emptyid.csv: line 2 has an empty item id"),
])
def test_bad_files_are_one_line_errors_naming_file_line_and_fix(tmp_path: Path, name: str, text: str,
                                                                kwargs: dict, pattern: str) -> None:
    with pytest.raises(VaekitError, match=pattern) as e:
        read_interactions(_write(tmp_path / name, text), **kwargs)
    assert "\n" not in str(e.value) and str(tmp_path) in str(e.value)


def test_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(VaekitError, match=r"nope.csv: no such file"):
        read_interactions(tmp_path / "nope.csv")


def test_item_titles_formats(tmp_path: Path) -> None:
    dat = _write(tmp_path / "movies.dat", "1::Toy Story (1995)::Animation\n2::Jumanji (1995)::Adventure\n",
                 "latin-1")
    assert ml.item_titles(dat) == {1: "Toy Story (1995)", 2: "Jumanji (1995)"}
    csv_file = _write(tmp_path / "movies.csv", 'movieId,title,genres\n1,"American President, The (1995)",Comedy\n'
                                               "2,Amélie (2001),Romance\n")
    assert ml.item_titles(csv_file) == {1: "American President, The (1995)", 2: "Amélie (2001)"}
    item = _write(tmp_path / "u.item", "1|Café (1995)|01-Jan-1995||http://x|0|1\n", "latin-1")
    assert ml.item_titles(item) == {1: "Café (1995)"}
    custom = _write(tmp_path / "songs.tsv", "track\tname\nT1\tSong one\n")
    assert ml.item_titles(custom, id_column="track") == {"T1": "Song one"}
    with pytest.raises(VaekitError, match=r"no item title column in the header"):
        ml.item_titles(_write(tmp_path / "bad.csv", "movieId,genres\n1,x\n"))


# ---------------------------------------------------------------------------------------- config

def test_data_config_fields() -> None:
    assert {"movielens-100k", "movielens-1m", "movielens-20m", "movielens-latest-small"} <= set(DATASETS)
    assert set(ml.NAMES) == {n for n in DATASETS if n.startswith("movielens")}
    c = DataConfig(name="movielens-20m", min_rating=3, heldout_users=10000)
    assert (c.format, c.min_rating, c.min_user_items, c.heldout_users, c.holdout_fraction) == (
        "auto", 3.0, 5, 10000, 0.2)
    for kwargs, pattern in (({"format": "table"}, r"data.format.*auto, array, interactions"),
                            ({"min_user_items": 0}, r"data.min_user_items.*>= 1"),
                            ({"heldout_users": -1}, r"data.heldout_users.*>= 0"),
                            ({"holdout_fraction": 1.0}, r"data.holdout_fraction.*\(0, 1\)"),
                            ({"min_rating": float("nan")}, r"data.min_rating.*NaN"),
                            ({"user_column": 3}, r"data.user_column")):
        with pytest.raises(VaekitError, match=pattern):
            DataConfig(**kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- downloads

@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[str, type[FileHandler], Path]]:
    """A local mirror (VAEKIT_MIRROR), no public mirrors, no env data dir, cache under tmp_path."""
    monkeypatch.setattr(ml, "MIRRORS", {})
    monkeypatch.delenv("VAEKIT_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with serve() as (url, handler):
        monkeypatch.setenv("VAEKIT_MIRROR", url)
        yield url, handler, tmp_path / "data"


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _serve_zip(monkeypatch: pytest.MonkeyPatch, handler: type[FileHandler], name: str, body: bytes,
               md5_of: bytes | None) -> None:
    """Serve ``body`` as dataset ``name``'s zip; the expected md5 becomes that of ``md5_of`` (the test's own
    archive stands for GroupLens's, whose md5 the spec holds)."""
    spec = ml.SPECS[name]
    handler.files[f"{spec.dirs[0]}/{spec.zip_name}"] = body
    md5 = None if md5_of is None else hashlib.md5(md5_of).hexdigest()
    monkeypatch.setitem(ml.SPECS, name, dataclasses.replace(spec, zip_md5=md5))


def _listing(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


@needs_ml100k
def test_ml100k_downloads_from_a_mirror_then_loads_offline(isolated, monkeypatch: pytest.MonkeyPatch) -> None:
    _, handler, data = isolated
    body = _zip({"ml-100k/u.data": (ML100K / "u.data").read_bytes(),
                 "ml-100k/u.item": (ML100K / "u.item").read_bytes(), "ml-100k/README": b"readme"})
    _serve_zip(monkeypatch, handler, "movielens-100k", body, body)
    inter, titles = ml.load_movielens("movielens-100k", str(data), timeout=5)
    assert _listing(data / "movielens-100k") == ["u.data", "u.item"]  # no zip, no temporary files left
    assert (data / "movielens-100k" / "u.data").read_bytes() == (ML100K / "u.data").read_bytes()
    assert len(inter) == 100_000 and len(titles) == 1682
    assert inter.info["dataset"]["files"]["u.data"]["sha256_matches_published"]
    monkeypatch.setenv("VAEKIT_MIRROR", "http://127.0.0.1:9")  # now offline: the local copy is used
    again, _ = ml.load_movielens("movielens-100k", str(data), download=False)
    assert again.source == str((data / "movielens-100k" / "u.data").resolve())


@needs_ml100k
def test_a_member_that_differs_from_its_published_sha256_is_not_kept(isolated,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _, handler, data = isolated
    tampered = (ML100K / "u.data").read_bytes().replace(b"\t5\t", b"\t4\t", 1)
    body = _zip({"ml-100k/u.data": tampered, "ml-100k/u.item": (ML100K / "u.item").read_bytes()})
    _serve_zip(monkeypatch, handler, "movielens-100k", body, body)  # the archive itself passes its md5
    with pytest.raises(VaekitError, match=r"u.data does not match its published sha256"):
        ml.load_movielens("movielens-100k", str(data), timeout=5)
    assert _listing(data / "movielens-100k") == ["u.item"]  # u.item was good; u.data never appeared
    with pytest.raises(VaekitError, match=r"missing u.data and u.item .*--data.download true"):
        ml.load_movielens("movielens-100k", str(data), download=False)


def test_ml1m_and_latest_small_layouts_download_and_parse(isolated, monkeypatch: pytest.MonkeyPatch) -> None:
    _, handler, data = isolated
    ratings = "1::10::5::978300760\n1::20::3::978302109\n2::10::4::978298709\n"
    movies = "10::Heat (1995)::Action\n20::Sabrina (1995)::Comedy\n"
    body = _zip({"ml-1m/ratings.dat": ratings.encode(), "ml-1m/movies.dat": movies.encode("latin-1"),
                 "ml-1m/users.dat": b"1::F::1::10::48067\n"})
    _serve_zip(monkeypatch, handler, "movielens-1m", body, body)
    inter, titles = ml.load_movielens("movielens-1m", str(data), timeout=5)
    assert _events(inter) == [(1, 10, 5.0, 978300760), (1, 20, 3.0, 978302109), (2, 10, 4.0, 978298709)]
    assert titles == {10: "Heat (1995)", 20: "Sabrina (1995)"}
    assert _listing(data / "movielens-1m") == ["movies.dat", "ratings.dat"]
    small = _zip({"ml-latest-small/ratings.csv": b"userId,movieId,rating,timestamp\n3,7,4.5,964982703\n",
                  "ml-latest-small/movies.csv": b'movieId,title,genres\n7,"Sabrina, The (1995)",Comedy\n'})
    _serve_zip(monkeypatch, handler, "movielens-latest-small", small, None)  # GroupLens updates it: no md5
    inter, titles = ml.load_movielens("movielens-latest-small", str(data), timeout=5)
    assert _events(inter) == [(3, 7, 4.5, 964982703)] and titles == {7: "Sabrina, The (1995)"}


def test_corrupted_or_cut_off_zip_keeps_nothing(isolated, monkeypatch: pytest.MonkeyPatch) -> None:
    url, handler, data = isolated
    good = _zip({"ml-20m/ratings.csv": b"userId,movieId,rating,timestamp\n1,2,3.5,4\n",
                 "ml-20m/movies.csv": b"movieId,title,genres\n2,X (1999),Drama\n"})
    _serve_zip(monkeypatch, handler, "movielens-20m", good[:-40] + bytes(40), good)
    with pytest.raises(VaekitError, match=r"checksum mismatch for ml-20m.zip: md5 .*nothing was kept"):
        ml.load_movielens("movielens-20m", str(data), timeout=5)
    assert _listing(data / "movielens-20m") == []
    # served under /drop/: the server promises twice the bytes, sends half, then hangs up
    handler.files["movielens-20m/ml-20m.zip"] = good
    monkeypatch.setenv("VAEKIT_MIRROR", f"{url}/drop")
    with pytest.raises(VaekitError, match=r"cut off after .*nothing was kept"):
        ml.load_movielens("movielens-20m", str(data), timeout=5)
    assert _listing(data / "movielens-20m") == []
    monkeypatch.setenv("VAEKIT_MIRROR", url)
    not_zip = b"<html>not found</html>"
    _serve_zip(monkeypatch, handler, "movielens-20m", not_zip, not_zip)
    with pytest.raises(VaekitError, match=r"ml-20m.zip is not a zip file"):
        ml.load_movielens("movielens-20m", str(data), timeout=5)
    assert _listing(data / "movielens-20m") == []
    _serve_zip(monkeypatch, handler, "movielens-20m", good, good)  # and the good archive then goes through
    inter, titles = ml.load_movielens("movielens-20m", str(data), timeout=5)
    assert _events(inter) == [(1, 2, 3.5, 4)] and titles == {2: "X (1999)"}


def test_offline_error_names_the_files_and_the_folder(isolated, monkeypatch: pytest.MonkeyPatch) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here: connection refused, like being offline
    monkeypatch.setenv("VAEKIT_MIRROR", f"http://127.0.0.1:{port}")
    data = isolated[2]
    with pytest.raises(VaekitError) as e:
        ml.load_movielens("movielens-1m", str(data), timeout=5)
    msg = str(e.value)
    assert "offline" in msg and "ratings.dat and movies.dat" in msg and str(data / "movielens-1m") in msg
    assert _listing(data / "movielens-1m") == []
    with pytest.raises(VaekitError, match=r"unknown MovieLens dataset 'movielens-2m'"):
        ml.load_movielens("movielens-2m", str(data))
