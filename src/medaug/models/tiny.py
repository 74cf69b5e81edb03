"""Tiny random Llama / GPT-2 models for tests: built in seconds, identical in every process.

The tokenizer is a byte-level BPE trained on a fixed built-in corpus, so " yes", " no", " maybe" and the option
letters " A" to " D" are single tokens (as in real tokenizers) and any text still encodes (byte fallback).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from medaug.errors import MedaugError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

NAMES = ("tiny-llama", "tiny-gpt2")
RECIPE = 3
"""Bump when the corpus, tokenizer or configs change: cached tiny models with another recipe are rebuilt."""

CORPUS = """\
Abstract: To evaluate whether early mobilization after hip fracture surgery reduces the length of hospital stay.
Methods: We conducted a randomized controlled trial in patients aged 65 years and older admitted with a hip fracture.
Results: Patients in the intervention group had a shorter hospital stay and fewer postoperative complications.
Conclusions: Early mobilization is associated with improved outcomes in elderly patients after surgery.
Question: Does early mobilization reduce the length of hospital stay? Answer: yes
Background: The role of vitamin D supplementation in the prevention of respiratory infections remains unclear.
A retrospective cohort study of adults with chronic obstructive pulmonary disease was performed.
There was no significant difference in the incidence of infection between the treated and control groups.
Question: Does vitamin D supplementation prevent respiratory infections? Answer: no
Objective: To assess the diagnostic accuracy of ultrasound compared with computed tomography in children.
The sensitivity and specificity of ultrasound were 85% and 92%, respectively, with a wide confidence interval.
Further studies with larger samples are needed before ultrasound can replace computed tomography.
Question: Can ultrasound replace computed tomography for the diagnosis of appendicitis in children? Answer: maybe
Purpose: This study investigated the association between body mass index and mortality in patients with heart failure.
Multivariate analysis showed that obesity was an independent predictor of lower mortality (hazard ratio 0.78).
Question: Is obesity associated with lower mortality in heart failure? Answer: yes
Aims: We examined whether smoking cessation counselling in primary care increases quit rates at one year.
The quit rates were similar in both arms of the trial, and the difference was not statistically significant.
Question: Does counselling in primary care increase quit rates? Answer: no
Introduction: Depression is common among patients with diabetes and may affect glycaemic control.
Patients with depressive symptoms had higher levels of glycated haemoglobin, but the effect was small.
Question: Does depression worsen glycaemic control in diabetes? Answer: maybe
The aim of this study was to determine the prevalence of hypertension among pregnant women in a rural district.
Blood pressure was measured at each visit, and the data were analysed with logistic regression.
Women with a family history of hypertension were more likely to develop preeclampsia during pregnancy.
Question: Is a family history of hypertension a risk factor for preeclampsia? Answer: yes
We reviewed the medical records of all patients who underwent laparoscopic cholecystectomy between 2005 and 2010.
The rate of bile duct injury was low and did not differ between surgeons with more or less experience.
Question: Does surgeon experience affect the rate of bile duct injury? Answer: no
Serum levels of inflammatory markers were measured before and after treatment with the new antibiotic.
The treatment reduced the levels of C-reactive protein, although clinical symptoms did not always improve.
Question: Do inflammatory markers predict the response to antibiotic treatment? Answer: maybe
The results suggest that screening for colorectal cancer in older adults may reduce cancer mortality.
Question: Should screening for colorectal cancer be offered to older adults? Answer: yes
In this prospective study, the quality of life of patients with asthma improved after the education programme.
Question: Does an education programme improve the quality of life of patients with asthma? Answer: yes
No association was found between the use of mobile phones and the risk of brain tumours in adults.
Question: Is the use of mobile phones associated with brain tumours? Answer: no
The evidence for the effectiveness of acupuncture in chronic pain is limited and the results are inconsistent.
Question: Is acupuncture effective for chronic low back pain? Answer: maybe
yes no maybe yes no maybe yes no maybe yes no maybe yes no maybe yes no maybe
Question: Which option is correct? A B C D A B C D A B C D
"""


def _train_tokenizer() -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1024, min_frequency=2, show_progress=False,
                                  special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS.splitlines(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    for word in (" yes", " no", " maybe", " A", " B", " C", " D"):
        if len(fast(word, add_special_tokens=False).input_ids) != 1:
            raise MedaugError(f"tiny tokenizer: {word!r} is not a single token (fix CORPUS in {__file__})")
    return fast


def build(name: str, out_dir: Path) -> None:
    """Write tiny model `name` (model + tokenizer, via save_pretrained) into `out_dir`."""
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    tokenizer = _train_tokenizer()
    # initializer_range 0.1 (not 0.02): logits = lm_head(unit-RMS hidden) must be able to reach a few nats, or LoRA
    # (which leaves lm_head alone) cannot fit anything and training tests learn nothing.
    ids = dict(initializer_range=0.1, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    if name == "tiny-llama":
        config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=4, max_position_embeddings=1024, tie_word_embeddings=False, **ids)
    elif name == "tiny-gpt2":
        config = GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=1024, resid_pdrop=0.0, embd_pdrop=0.0,
                            attn_pdrop=0.0, **ids)
    else:
        raise MedaugError(f"unknown tiny model {name!r} (known: {', '.join(NAMES)})")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
