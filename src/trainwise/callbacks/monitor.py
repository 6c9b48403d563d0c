"""What "improvement" means for a monitored metric, and the strict lookup of a monitored value.

``mode="auto"`` reads the direction from the words of the metric's name, never from substrings:
``val_top2_accuracy``, ``val_acc``, ``val/iou`` and ``valid_dice_score`` are maximized;
``val_loss``, ``val_rmse``, ``val_dice_loss`` and ``val_bits_per_char`` are minimized. A name
whose words do not say (``val_foo``), or say both (``val_mse_score``), is refused with the fix:
a silent guess would make ``best.pt``, ``best_epoch`` and the restored weights the worst epoch.

Example:
    >>> resolve_mode("val_top2_accuracy", "auto"), resolve_mode("val_loss", "auto")
    ('max', 'min')
    >>> direction_of("val_foo") is None
    True
"""

from __future__ import annotations

import difflib
import re
from typing import Optional

from trainwise.checks import check_choice
from trainwise.errors import ConfigError

MODES = ("auto", "min", "max")

# Words of a name (or two adjacent words written together: ``exact_match``, Keras' ``mean_io_u``)
# that say "larger is better".
LARGER_IS_BETTER = frozenset("""
    accuracy acc f1 fbeta r2 auc auroc auprc roc ap map precision prec recall sensitivity specificity tpr tnr
    iou miou jaccard dice bleu sacrebleu rouge rougel meteor chrf cider mcc matthews kappa corr correlation
    pearson pearsonr spearman spearmanr similarity psnr snr sdr sisdr ssim pesq stoi score ndcg hit hits hitrate
    mrr top topk exactmatch em explainedvariance reward rewards throughput
""".split())
# Words that say "smaller is better".
SMALLER_IS_BETTER = frozenset("""
    loss losses error errors err mse rmse mae mape smape msle rmsle nll crossentropy bce hinge logcosh poisson
    perplexity ppl cer wer ter eer fpr fnr bpc bpd bits kl kld divergence distance dist fid lpips huber l1 l2
    regret cost time seconds secs latency duration
""".split())
_VOCABULARY = sorted(LARGER_IS_BETTER | SMALLER_IS_BETTER)
# Words after which a "larger is better" word no longer decides: ``dice_loss``, ``top1_error``.
_HEAD_NOUNS = frozenset("loss losses error errors err cost".split())
# Words that turn a figure into another one (a negation, a change, a spread): the name does not say.
_MODIFIERS = frozenset("""
    neg negative minus inv inverse reciprocal delta diff difference change gain improvement reduction drop
    decrease increase rise fall std var variance
""".split())
_TIME_UNITS = frozenset("second seconds sec secs s ms minute minutes hour hours".split())


def name_words(name: str) -> list[str]:
    """The lower-case words of a metric name: split on anything but letters and digits and at
    camelCase boundaries, digits kept in their word (``val/top5Acc``: ``val``, ``top5``, ``acc``),
    two adjacent words that are one known word written apart joined (``exact_match``)."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)
    words = [word.lower() for word in re.split(r"[^A-Za-z0-9]+", spaced) if word]
    joined: list[str] = []
    for word in words:
        if joined and joined[-1] + word in _VOCABULARY:
            joined[-1] += word
        else:
            joined.append(word)
    return joined


def _word_direction(word: str) -> Optional[str]:
    """``max``/``min`` for one word; a trailing number makes a variant of the word (``top5``,
    ``ap50``, ``rouge1``, ``f2``); a word of digits alone says nothing."""
    for candidate in (word, word.rstrip("0123456789")):
        if candidate in LARGER_IS_BETTER:
            return "max"
        if candidate in SMALLER_IS_BETTER:
            return "min"
    return "max" if re.fullmatch(r"f\d+", word) else None  # an F-beta score: f2, f05


def direction_of(name: str) -> Optional[str]:
    """``"max"`` or ``"min"`` when the words of ``name`` say so, else None (no deciding word, words
    that disagree, or a word such as ``neg`` or ``delta`` that changes what the figure means).

    Words that disagree decide only when the last is a loss or an error (``val_dice_loss``,
    ``top1_error``: min). In ``a_per_b`` the words before ``per`` decide (``bits_per_char``: min),
    and a count per unit of time is a throughput (``samples_per_second``: max).
    """
    words = name_words(name)
    if any(word in _MODIFIERS for word in words):
        return None
    if "per" in words:
        cut = words.index("per")
        head, tail = words[:cut], words[cut + 1:]
        if not any(_word_direction(word) for word in head) and tail and tail[0] in _TIME_UNITS:
            return "max"
        words = head
    found = [(word, direction) for word in words if (direction := _word_direction(word))]
    if not found:
        return None
    if len({direction for _, direction in found}) == 1:
        return found[0][1]
    return "min" if found[-1][0] in _HEAD_NOUNS else None


def undecided_message(name: str, fix: str) -> str:
    """The one line that refuses a name whose direction ``auto`` cannot tell, with a did-you-mean
    when one of its words is a near miss of a known one (``val_acuracy``)."""
    hint = ""
    for word in name_words(name):
        if _word_direction(word) or word in _MODIFIERS or len(word) < 3 or word not in name:
            continue
        match = difflib.get_close_matches(word, _VOCABULARY, n=1, cutoff=0.85)
        if match:
            hint = f" (did you mean {name.replace(word, match[0], 1)!r}?)"
            break
    return f"cannot tell whether {name!r} is better higher or lower{hint}; {fix}"


def resolve_mode(monitor: str, mode: str, *, setting: str = "mode") -> str:
    """``min`` or ``max``: ``mode`` itself, or for ``auto`` the direction the words of ``monitor``
    say (see ``direction_of``). ``setting`` names where the mode is set, for the error.

    Raises:
        ConfigError: ``mode`` is not one of auto/min/max, or it is ``auto`` and the name does not
            say which direction is better.
    """
    check_choice(setting, mode, MODES)
    if mode != "auto":
        return mode
    direction = direction_of(monitor)
    if direction is None:
        fix = "pass mode='max' or mode='min'" if setting == "mode" else f"set {setting} to max or min"
        raise ConfigError(undecided_message(monitor, fix))
    return direction


def require_metric(monitor: str, metrics: dict[str, float], who: str) -> float:
    """The monitored value, or a strict error listing what is available (never a silent skip)."""
    if monitor not in metrics:
        available = ", ".join(sorted(metrics)) or "none"
        raise ConfigError(f"{who} monitors {monitor!r}, which this run does not log; available metrics: {available}")
    return metrics[monitor]
