"""The mix plan: sequences per (domain, length) from a token budget and fractions."""

import pytest

from longmix.stages.logic.mix import MixError, directory_name, plan_mix

AVAILABLE = {("code", 1024): 30, ("code", 512): 20, ("web", 512): 100}
DIRECTORIES = {key: directory_name(key[0], key[1], key[0] == "code") for key in AVAILABLE}


def test_without_a_budget_everything_is_kept_once():
    targets = plan_mix(AVAILABLE, DIRECTORIES, {}, None, "repeat")
    assert {k: (t.target, t.repeat) for k, t in targets.items()} == {
        key: (count, 1.0) for key, count in AVAILABLE.items()
    }


def test_budget_fractions_give_sequences_and_repeat_factors():
    fractions = {("code", None): 0.5, ("web", None): 0.5}
    targets = plan_mix(AVAILABLE, DIRECTORIES, fractions, 102_400, "repeat")
    # code's half is shared between its lengths by their tokens (30 K : 10 K).
    assert targets[("code", 1024)].target == round(102_400 * 0.5 * 0.75 / 1024)
    assert targets[("code", 512)].target == round(102_400 * 0.5 * 0.25 / 512)
    web = targets[("web", 512)]
    assert web.target == 100 and web.repeat == 1.0
    code = targets[("code", 1024)]
    assert (code.copies, code.extra) == divmod(code.target, 30)
    assert code.directory == "code-1024" and web.directory == "web"


def test_explicit_lengths_and_a_shortfall_that_fails():
    fractions = {("code", 1024): 0.9, ("web", 512): 0.1}
    targets = plan_mix(AVAILABLE, DIRECTORIES, fractions, 102_400, "repeat")
    assert ("code", 512) not in targets
    assert targets[("code", 1024)].repeat == pytest.approx(90 / 30)
    with pytest.raises(MixError, match=r"code at 1024 needs 90 sequences .* but has 30"):
        plan_mix(AVAILABLE, DIRECTORIES, fractions, 102_400, "fail")


def test_a_domain_without_sequences_is_refused():
    with pytest.raises(MixError, match="'books' has no sequences"):
        plan_mix(AVAILABLE, DIRECTORIES, {("books", None): 1.0}, 1000, "repeat")
