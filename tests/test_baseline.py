import pickle

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from mlabel.baseline import TfidfModel

TOPICS = {
    "physics": ["quantum", "photon", "lattice", "spin", "boson"],
    "biology": ["protein", "gene", "cell", "enzyme", "tissue"],
    "finance": ["market", "stock", "portfolio", "price", "risk"],
}
FILLER = ["we", "study", "the", "results", "show", "a", "new", "method", "Café"]


def make_corpus(n: int = 120, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Texts mixing one or two topics' words with filler; y marks the topics used."""
    rng = np.random.default_rng(seed)
    topics = list(TOPICS)
    texts, y = [], np.zeros((n, len(topics)), dtype=np.int64)
    for i in range(n):
        chosen = rng.choice(len(topics), size=1 + (i % 3 == 0), replace=False)
        words = list(rng.choice(FILLER, size=6))
        for k in chosen:
            y[i, k] = 1
            words += list(rng.choice(TOPICS[topics[k]], size=4))
        rng.shuffle(words)
        texts.append(" ".join(words))
    return texts, y


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], np.ndarray]:
    return make_corpus()


@pytest.fixture(scope="module")
def fitted(corpus) -> TfidfModel:
    texts, y = corpus
    return TfidfModel().fit(texts, y)


def test_predict_proba_shape_and_dtype(fitted, corpus):
    texts, y = corpus
    probs = fitted.predict_proba(texts[:7])
    assert probs.shape == (7, y.shape[1])
    assert probs.dtype == np.float32
    assert ((probs >= 0) & (probs <= 1)).all()


def test_separates_topics(fitted):
    texts, y = make_corpus(n=60, seed=1)
    probs = fitted.predict_proba(texts)
    assert ((probs >= 0.5) == y.astype(bool)).mean() > 0.95
    for k in range(y.shape[1]):
        assert probs[y[:, k] == 1, k].min() > probs[y[:, k] == 0, k].max()


def test_save_load_round_trip(fitted, corpus, tmp_path):
    texts, _ = corpus
    fitted.save(tmp_path / "tfidf")
    loaded = TfidfModel.load(tmp_path / "tfidf")
    unseen = ["quantum café protein", "", "market price of spin"]
    for batch in (texts, unseen):
        assert np.allclose(loaded.predict_proba(batch), fitted.predict_proba(batch), atol=1e-6)


def test_saved_folder_has_no_pickle(fitted, tmp_path, monkeypatch):
    fitted.save(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["settings.json", "vocabulary.json", "weights.safetensors"]
    for path in tmp_path.iterdir():
        assert not path.read_bytes().startswith(b"\x80")  # every pickle protocol >= 2 starts so

    def refuse(*args, **kwargs):
        raise AssertionError("pickle used while loading")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    TfidfModel.load(tmp_path).predict_proba(["quantum photon"])


def test_label_without_positives_predicts_zero(corpus):
    texts, y = corpus
    y = np.concatenate([y, np.zeros((len(texts), 1), dtype=y.dtype)], axis=1)
    probs = TfidfModel().fit(texts, y).predict_proba(texts)
    assert probs.shape == (len(texts), 4)
    assert probs[:, 3].max() < 1e-6
    assert ((probs[:, :3] >= 0.5) == y[:, :3].astype(bool)).mean() > 0.95


def test_small_corpus_keeps_rare_terms():
    model = TfidfModel().fit(["alpha beta", "gamma delta"], np.array([[1], [0]]))
    assert "alpha" in model.vectorizer_.vocabulary_
    assert model.predict_proba(["alpha"])[0, 0] > model.predict_proba(["gamma"])[0, 0]


@pytest.mark.parametrize(
    ("y", "message"),
    [
        (np.array([1, 0]), r"shape \(2,\)"),
        (np.array([[1], [0], [1]]), r"shape \(3, 1\), expected \(2, n_labels\)"),
        (np.array([[1], [2]]), "value 2"),
    ],
)
def test_fit_rejects_bad_targets(y, message):
    with pytest.raises(ValueError, match=message):
        TfidfModel().fit(["a b", "c d"], y)


def test_unfitted_model_raises(tmp_path):
    with pytest.raises(NotFittedError, match="not fitted"):
        TfidfModel().predict_proba(["text"])
    with pytest.raises(NotFittedError, match="not fitted"):
        TfidfModel().save(tmp_path)


def test_fitting_shows_the_labels_done_once_it_takes_a_while(corpus, monkeypatch):
    """One logistic regression per label: with thousands of labels fitting takes minutes, so a
    progress bar counts them; it waits 2 s before it shows, so small fits print nothing."""
    import mlabel.baseline

    made, done = [], []

    class Bar:
        def __init__(self, **kwargs):
            made.append(kwargs)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            done.append(n)

    monkeypatch.setattr(mlabel.baseline, "tqdm", Bar)
    texts, y = corpus
    TfidfModel().fit(texts, y)
    ((kwargs),) = made
    assert kwargs["total"] == sum(done) == y.shape[1] and kwargs["unit"] == "label"
    assert kwargs["delay"] == 2 and kwargs["leave"] is False


def test_many_labels_are_fitted_in_worker_processes_to_the_same_weights(corpus, monkeypatch):
    """Past two blocks of labels (and enough work), blocks go to worker processes: the weights
    are those of one process, since every fit is seeded alike (liblinear's dual passes visit
    rows at random), and the workers' memory-mapped features are theirs to write."""
    import mlabel.baseline

    texts, y = corpus
    rng = np.random.default_rng(0)
    many = np.hstack([y, rng.random((len(texts), 3 * mlabel.baseline.LABEL_BLOCK)) < 0.2])
    jobs = []
    real = mlabel.baseline.Parallel

    def spied(n_jobs, **kw):  # every array to the workers as a memory map, as large ones go
        return jobs.append(n_jobs) or real(n_jobs, max_nbytes=0, **kw)

    monkeypatch.setattr(mlabel.baseline, "Parallel", spied)
    monkeypatch.setattr(mlabel.baseline, "MIN_DF_ROWS", 10**6)  # more terms than texts: dual
    monkeypatch.setattr(mlabel.baseline, "PARALLEL_WORK", 0)  # a small corpus in workers too
    alone = TfidfModel(workers=1).fit(texts, many)
    shared = TfidfModel(workers=2).fit(texts, many)
    assert jobs == [1, 2]
    assert np.array_equal(alone.coef_, shared.coef_)
    assert np.array_equal(alone.intercept_, shared.intercept_)
    assert TfidfModel(workers=2).fit(texts, y).coef_.shape[0] == 3 and jobs[-1] == 1  # one block
    monkeypatch.setattr(mlabel.baseline, "PARALLEL_WORK", 10**8)
    TfidfModel(workers=2).fit(texts, many)
    assert jobs[-1] == 1  # work for seconds: one process


def test_thousands_of_labels_keep_the_weights_within_a_budget(corpus, monkeypatch, tmp_path):
    """Labels x terms weights stay within MAX_WEIGHTS: many labels keep fewer, frequent terms."""
    texts, y = corpus
    full = TfidfModel().fit(texts, y)
    monkeypatch.setattr("mlabel.baseline.MAX_WEIGHTS", 3 * 20)  # 3 labels: 20 terms
    small = TfidfModel().fit(texts, y)
    assert len(full.vectorizer_.vocabulary_) > 20 == len(small.vectorizer_.vocabulary_)
    assert small.coef_.size == 60
    small.save(tmp_path)
    assert TfidfModel.load(tmp_path).coef_.shape == (3, 20)
    vocabulary, idf = full.vectorizer_.vocabulary_, full.vectorizer_.idf_
    frequent = min(vocabulary, key=lambda term: idf[vocabulary[term]])  # in the most texts
    assert frequent in small.vectorizer_.vocabulary_  # the most frequent term is kept
