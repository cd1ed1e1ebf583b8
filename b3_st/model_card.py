"""A B3 section, the ``b3`` tag and ``b3_config.json`` on the model card of a model trained on B3 batches.

``SentenceTransformerTrainer`` builds the batch sampler itself, in ``get_batch_sampler``, and passes
it the dataset but not the model. So a :class:`~b3_st.B3BatchSampler` registers itself when it is
constructed: it looks through its caller frames for the ``transformers.Trainer`` whose
``get_batch_sampler`` is building it (the trainer calls the sampler class, or the factory of
:meth:`B3BatchSampler.bind`, directly from there) and records itself on ``trainer.model``'s model
card data with :func:`add_b3_to_model_card`. Samplers built for the evaluation dataset are not
recorded. A sampler built outside a trainer registers nothing; call :func:`add_b3_to_model_card`
yourself in that case.

Registration uses the model card hooks of sentence-transformers rather than editing README.md
after the fact:

- the ``b3`` tag goes in through ``model_card_data.add_tags``;
- the B3 paper goes into ``model_card_data.citations``, which the card renders as BibTeX;
- the model card data object gets a subclass of its own class (see :class:`B3ModelCardMixin`)
  whose ``to_dict`` adds a ``b3_section`` template variable and writes ``b3_config.json`` into the
  folder being saved, just as sentence-transformers writes widget assets there;
- ``model_card_data.template_path`` points at a copy of the model's card template with one
  ``{{ b3_section }}`` line inserted before the training hyperparameters.

So ``model.save_pretrained``, ``trainer.save_model``, checkpoints and ``model.push_to_hub`` all
write the section and the file, and the sentence-transformers template stays in charge of the
rest of the card.

NOTE: the frame search relies on sentence-transformers (checked with 6.3) calling the sampler
from a trainer method. A model loaded from disk and saved again without training keeps its old
README through sentence-transformers, but its new folder gets no ``b3_config.json``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
import weakref
from pathlib import Path
from typing import Any

from b3_st.cache import cache_root
from b3_st.card_record import CARD_FILE, SamplerRecord, ordering_of, write_card_file
from b3_st.card_section import render_section

logger = logging.getLogger(__name__)

B3_TAG = "b3"
SECTION_VARIABLE = "b3_section"
PAPER_CITATION = """@misc{thirukovalluru2025breaking,
    title={Breaking the Batch Barrier (B3) of Contrastive Learning via Smart Batch Mining},
    author={Raghuveer Thirukovalluru and Rui Meng and Ye Liu and Karthikeyan K and Mingyi Su and Ping Nie and Semih Yavuz and Yingbo Zhou and Wenhu Chen and Bhuwan Dhingra},
    year={2025},
    eprint={2505.11293},
    archivePrefix={arXiv},
    url={https://arxiv.org/abs/2505.11293},
}"""

# The section goes before the first of these template lines that exists, else at the end.
_SECTION_ANCHORS = ("{% if all_hyperparameters %}", "### Framework Versions", "## Citation")

# How many caller frames of the sampler are searched for the trainer that builds it.
_MAX_TRAINER_FRAME_DEPTH = 8


class B3ModelCardMixin:
    """Adds the B3 section and ``b3_config.json`` to a sentence-transformers model card data class.

    :func:`add_b3_to_model_card` gives a model's existing card data object a subclass of its own
    class with this mixin first, so every other field and method stays as sentence-transformers
    set it. ``b3_records`` are the recorded samplers. Every save refreshes each record's ordering
    location from its mined result, so a push of the ordering after training still shows.
    """

    b3_records: list[SamplerRecord]
    b3_mined_refs: list[weakref.ref | None]
    b3_base_template_path: Path
    template_path: Path

    def to_dict(self) -> dict[str, Any]:
        # sentence-transformers reads the template after this call, so a template file deleted
        # from the cache (or missing after unpickling elsewhere) can still be written back here.
        if not Path(self.template_path).exists():
            _write_text(Path(self.template_path), _section_template_text(self.b3_base_template_path))
        self._refresh_b3_orderings()
        data = super().to_dict()
        data[SECTION_VARIABLE] = render_section(self.b3_records, model_id=data.get("model_id"))

        save_dir = getattr(self, "save_dir", None)
        if save_dir:
            try:
                write_card_file(save_dir, self.b3_records)
            except OSError as error:
                logger.warning("Could not write %s into %s (%s); the README still has the B3 section.",
                               CARD_FILE, save_dir, error)
        return data

    def _refresh_b3_orderings(self) -> None:
        for record, reference in zip(self.b3_records, self.b3_mined_refs):
            mined = reference() if reference is not None else None
            if mined is not None:
                record.ordering = ordering_of(mined)

    def __reduce__(self):
        # The subclass is made at run time, so pickles name the sentence-transformers base class.
        state = dict(self.__dict__)
        state["b3_mined_refs"] = [None] * len(self.b3_records)
        return _rebuild_card, (type(self).__mro__[2], state)


_CARD_CLASSES: dict[type, type] = {}


def _card_class(base: type) -> type:
    """Return the subclass of ``base`` with :class:`B3ModelCardMixin`, made once per base class."""
    if base not in _CARD_CLASSES:
        name = f"B3{base.__name__}"
        _CARD_CLASSES[base] = type(name, (B3ModelCardMixin, base), {"__module__": __name__})
    return _CARD_CLASSES[base]


def _rebuild_card(base: type, state: dict[str, Any]) -> Any:
    card = base.__new__(base)
    card.__dict__.update(state)
    card.__class__ = _card_class(base)
    return card


def _section_template_text(base_template: Path) -> str:
    """Return the text of ``base_template`` with the B3 section variable inserted."""
    text = base_template.read_text(encoding="utf-8")
    line = "{{ " + SECTION_VARIABLE + " }}\n"
    if line in text:
        return text

    for anchor in _SECTION_ANCHORS:
        position = text.find(anchor)
        if position >= 0:
            return text[:position] + line + text[position:]
    return text.rstrip("\n") + "\n\n" + line


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _section_template(base_template: Path, cache_dir: str | os.PathLike | None) -> Path:
    """Return the path of the B3 copy of ``base_template`` in the cache, writing it when missing.

    The file name carries a hash of the content, so each template version is written once.
    """
    text = _section_template_text(base_template)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    path = cache_root(cache_dir) / "model_card_templates" / f"{base_template.stem}-{digest}.md"
    if not path.exists():
        _write_text(path, text)
    return path


def add_b3_to_model_card(model: Any, sampler: Any) -> SamplerRecord:
    """Record ``sampler`` on the model card of ``model`` so that saving writes the B3 section.

    Trainers call this through the sampler; call it yourself only for a sampler built outside a
    trainer. Registering the same data, settings and sampler arguments twice keeps one record.

    Args:
        model: A sentence-transformers model (anything with ``model_card_data``).
        sampler: A constructed :class:`~b3_st.B3BatchSampler`.

    Returns:
        The record stored on the card.
    """
    card = model.model_card_data
    if not isinstance(card, B3ModelCardMixin):
        template = _section_template(Path(card.template_path), sampler.config.cache_dir)
        card.__class__ = _card_class(type(card))
        card.b3_records = []
        card.b3_mined_refs = []
        card.b3_base_template_path = Path(card.template_path)
        card.template_path = template

    record = SamplerRecord.from_sampler(sampler)
    reference = weakref.ref(sampler.mined)
    for index, existing in enumerate(card.b3_records):
        if existing.same_sampler(record):
            card.b3_records[index] = record
            card.b3_mined_refs[index] = reference
            break
    else:
        card.b3_records.append(record)
        card.b3_mined_refs.append(reference)

    card.add_tags(B3_TAG)
    card.citations = {**card.citations, "B3": PAPER_CITATION}
    logger.info("Recorded the B3 sampler (%d rows, batch size %d) on the model card", record.rows, record.batch_size)
    return record


def _calling_trainer() -> Any:
    """Return the ``transformers.Trainer`` among the caller frames, or ``None``."""
    from transformers import Trainer

    frame = sys._getframe(2)
    try:
        for _ in range(_MAX_TRAINER_FRAME_DEPTH):
            if frame is None:
                return None
            candidate = frame.f_locals.get("self")
            if isinstance(candidate, Trainer):
                return candidate
            frame = frame.f_back
        return None
    finally:
        del frame


def _is_training_dataset(trainer: Any, dataset: Any) -> bool:
    train_dataset = getattr(trainer, "train_dataset", None)
    if train_dataset is dataset:
        return True
    values = getattr(train_dataset, "values", None)
    return callable(values) and any(part is dataset for part in values())


def register_with_calling_trainer(sampler: Any) -> bool:
    """Record ``sampler`` on the model card of the trainer that is constructing it, if any.

    Returns:
        Whether the sampler was recorded. It is not when no trainer is among the caller frames,
        when the sampler is for the evaluation dataset, or when the model has no model card data.
    """
    trainer = _calling_trainer()
    if trainer is None:
        logger.debug("B3BatchSampler built outside a trainer: nothing recorded on a model card.")
        return False
    if not _is_training_dataset(trainer, sampler.dataset):
        return False
    model = getattr(trainer, "model", None)
    if model is None or not hasattr(model, "model_card_data"):
        return False

    # A card that fails to record must not stop training, so the error becomes a warning.
    try:
        add_b3_to_model_card(model, sampler)
    except (OSError, ValueError, TypeError, AttributeError) as error:
        logger.warning("Could not record the B3 sampler on the model card (%s): the saved card will have no "
                       "B3 section. Call b3_st.add_b3_to_model_card(model, sampler) to retry.", error)
        return False
    return True
