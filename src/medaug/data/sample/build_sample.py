"""Build ori_pqal_sample.json: 120 SYNTHETIC PubMedQA-shaped records (see README.md in this folder).

Deterministic (seeded); re-run with `python src/medaug/data/sample/build_sample.py` and commit the JSON.
Each abstract is composed from templates: a study kind (treatment trial, exposure cohort, diagnostic marker),
a population, an intervention/exposure/marker and an outcome. The RESULTS wording carries the answer
(a clear significant effect -> yes, no effect -> no, mixed or borderline evidence -> maybe), so a model
can learn the task from the text. Every number and finding is invented.

Label counts are 60 yes / 40 no / 20 maybe: close to PubMedQA's 55/34/11 and, with PubMedQA's official
split algorithm, they give equal folds (60 test; 54 train / 6 dev for every fold).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 20240
COUNTS = {"yes": 60, "no": 40, "maybe": 20}
OUT = Path(__file__).with_name("ori_pqal_sample.json")

# Every pool entry ends with tags. A population lists what it is (adult, surgical, diabetes); an intervention,
# exposure, marker or outcome names the one tag a population needs to be paired with it ("" = any population).
# (population, MeSH, tags)
POPULATIONS = [
    ("adults undergoing elective hip replacement", ["Adult", "Arthroplasty, Replacement, Hip"], "adult surgical"),
    ("older adults admitted with community-acquired pneumonia", ["Aged", "Pneumonia"], "adult"),
    ("children with moderate asthma", ["Child", "Asthma"], ""),
    ("women with gestational diabetes", ["Female", "Pregnancy", "Diabetes, Gestational"], "adult diabetes"),
    ("patients with type 2 diabetes", ["Diabetes Mellitus, Type 2"], "adult diabetes"),
    ("patients undergoing cardiac surgery", ["Cardiac Surgical Procedures"], "adult surgical"),
    ("adults with chronic low back pain", ["Adult", "Low Back Pain"], "adult"),
    ("patients with stage 3 chronic kidney disease", ["Renal Insufficiency, Chronic"], "adult"),
    ("preterm infants in neonatal intensive care", ["Infant, Premature", "Intensive Care Units, Neonatal"], ""),
    ("adults with major depressive disorder", ["Adult", "Depressive Disorder, Major"], "adult"),
    ("patients admitted to a medical intensive care unit", ["Intensive Care Units", "Critical Illness"], "adult"),
    ("adolescents with obesity", ["Adolescent", "Pediatric Obesity"], ""),
    ("patients with atrial fibrillation", ["Atrial Fibrillation"], "adult"),
    ("adults undergoing colorectal resection", ["Adult", "Colorectal Surgery"], "adult surgical"),
    ("nursing home residents", ["Aged", "Nursing Homes"], "adult"),
    ("patients with heart failure", ["Heart Failure"], "adult"),
    ("smokers attending primary care", ["Smoking", "Primary Health Care"], "adult"),
    ("patients with rheumatoid arthritis", ["Arthritis, Rheumatoid"], "adult"),
]

# treatment trials: (intervention, comparator, MeSH, needs)
INTERVENTIONS = [
    ("early mobilisation", "usual care", ["Early Ambulation"], ""),
    ("a nurse-led telephone follow-up programme", "standard discharge", ["Telephone", "Patient Discharge"], ""),
    ("daily vitamin D supplementation", "placebo", ["Vitamin D", "Dietary Supplements"], ""),
    ("a structured exercise programme", "written advice", ["Exercise Therapy"], "adult"),
    ("preoperative carbohydrate loading", "overnight fasting", ["Dietary Carbohydrates", "Preoperative Care"],
     "surgical"),
    ("chlorhexidine bathing", "soap and water bathing", ["Chlorhexidine", "Baths"], ""),
    ("a pharmacist-led medication review", "usual care", ["Pharmacists", "Medication Review"], "adult"),
    ("high-flow nasal oxygen", "conventional oxygen therapy", ["Oxygen Inhalation Therapy"], ""),
    ("cognitive behavioural therapy delivered online", "a waiting list", ["Cognitive Behavioral Therapy", "Internet"],
     "adult"),
    ("probiotic supplementation", "placebo", ["Probiotics"], ""),
    ("regional nerve block", "systemic opioids alone", ["Nerve Block", "Analgesics, Opioid"], "surgical"),
    ("a text-message reminder service", "no reminders", ["Text Messaging", "Reminder Systems"], ""),
    ("restrictive transfusion thresholds", "liberal transfusion thresholds", ["Blood Transfusion"], "surgical"),
    ("home-based pulmonary rehabilitation", "hospital-based rehabilitation", ["Home Care Services"], ""),
]

# exposure cohorts: (exposure, MeSH, needs)
EXPOSURES = [
    ("short sleep duration", ["Sleep"], "adult"),
    ("low serum albumin at admission", ["Serum Albumin"], ""),
    ("living alone", ["Residence Characteristics", "Social Isolation"], "adult"),
    ("frailty", ["Frailty"], "adult"),
    ("night-shift work", ["Shift Work Schedule"], "adult"),
    ("prior use of proton pump inhibitors", ["Proton Pump Inhibitors"], "adult"),
    ("anaemia before surgery", ["Anemia"], "surgical"),
    ("high sugar-sweetened beverage intake", ["Sugar-Sweetened Beverages"], ""),
    ("low physical activity", ["Sedentary Behavior"], ""),
    ("polypharmacy", ["Polypharmacy"], "adult"),
    ("elevated resting heart rate", ["Heart Rate"], ""),
    ("vitamin B12 deficiency", ["Vitamin B 12 Deficiency"], ""),
]

# diagnostic markers: (marker, MeSH, needs)
MARKERS = [
    ("serum procalcitonin", ["Procalcitonin", "Biomarkers"], ""),
    ("the neutrophil-to-lymphocyte ratio", ["Neutrophils", "Lymphocyte Count"], ""),
    ("a bedside frailty score", ["Geriatric Assessment"], "adult"),
    ("plasma lactate on arrival", ["Lactic Acid"], ""),
    ("point-of-care lung ultrasound", ["Ultrasonography", "Point-of-Care Systems"], ""),
    ("the six-minute walk distance", ["Walk Test"], "adult"),
    ("the admission troponin level", ["Troponin"], "adult"),
    ("grip strength", ["Hand Strength"], "adult"),
    ("a brief delirium screening questionnaire", ["Delirium", "Surveys and Questionnaires"], "adult"),
    ("cystatin C", ["Cystatin C"], ""),
]

# (outcome, MeSH, needs)
OUTCOMES = [
    ("postoperative delirium", ["Delirium", "Postoperative Complications"], "surgical"),
    ("hospital readmission within 30 days", ["Patient Readmission"], ""),
    ("prolonged hospital stay", ["Length of Stay"], ""),
    ("surgical site infection", ["Surgical Wound Infection"], "surgical"),
    ("falls", ["Accidental Falls"], "adult"),
    ("all-cause mortality at one year", ["Mortality"], ""),
    ("moderate or severe pain", ["Pain Measurement"], ""),
    ("bloodstream infection", ["Bacteremia"], ""),
    ("need for mechanical ventilation", ["Respiration, Artificial"], ""),
    ("worsening depressive symptoms", ["Depression"], ""),
    ("functional decline", ["Activities of Daily Living"], "adult"),
    ("acute kidney injury", ["Acute Kidney Injury"], ""),
    ("emergency department visits", ["Emergency Service, Hospital"], ""),
    ("poor glycaemic control", ["Glycated Hemoglobin", "Blood Glucose"], "diabetes"),
]

SUBGROUPS = ["patients older than 75 years", "women", "patients with diabetes", "the highest-risk tertile",
             "patients treated at the larger centre", "participants with good adherence"]
DESIGNS = {
    "treatment": [("In this randomised controlled trial,", ["Randomized Controlled Trials as Topic"]),
                  ("In this pragmatic multicentre trial,", ["Multicenter Studies as Topic"]),
                  ("In this single-centre open-label trial,", ["Prospective Studies"])],
    "exposure": [("This prospective cohort study followed", ["Prospective Studies", "Cohort Studies"]),
                 ("This retrospective cohort study reviewed", ["Retrospective Studies", "Cohort Studies"]),
                 ("This population-based registry study included", ["Registries"])],
    "marker": [("This prospective diagnostic study enrolled", ["Prospective Studies", "Predictive Value of Tests"]),
               ("This retrospective validation study analysed", ["Retrospective Studies", "ROC Curve"])],
}


def fits(pool: list[tuple], tags: str) -> list[tuple]:
    return [item for item in pool if item[-1] in tags.split() + [""]]


def bare(s: str) -> str:
    """Drop a leading article: "a waiting list" -> "waiting list" (for "the ... group")."""
    return s.split(" ", 1)[1] if s.split(" ", 1)[0] in ("a", "an") else s


def cap(s: str) -> str:
    return s[0].upper() + s[1:]


def pval(rng: random.Random, lo: float, hi: float) -> str:
    p = rng.uniform(lo, hi)
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def treatment(rng: random.Random, label: str, pop: str, out: str, tags: str) -> dict:
    inter, comp, mesh, _ = rng.choice(fits(INTERVENTIONS, tags))
    n1, n2 = rng.randint(40, 240), rng.randint(40, 240)
    months = rng.choice([3, 6, 12])
    design, dmesh = rng.choice(DESIGNS["treatment"])
    q = rng.choice(["Does {i} reduce {o} in {p}?", "Is {i} effective in preventing {o} among {p}?",
                    "Can {i} lower the rate of {o} in {p}?"]).format(i=inter, o=out, p=pop)
    background = rng.choice([
        f"{cap(out)} is common in {pop} and adds to costs and suffering. Whether {inter} lowers this risk is unclear.",
        f"{cap(inter)} has been proposed for {pop}, but its effect on {out} has not been tested rigorously.",
    ])
    objective = f"To determine whether {inter} reduces {out} compared with {comp} in {pop}."
    methods = (f"{design} {n1 + n2} {pop} were allocated to {inter} (n = {n1}) or {comp} (n = {n2}). "
               f"The primary outcome was {out} within {months} months; analysis was by intention to treat.")
    base = rng.randint(18, 45)
    if label == "yes":
        treated = base - rng.randint(8, 15)
        results = rng.choice([
            f"{cap(out)} occurred in {treated}% of the {bare(inter)} group and {base}% of the {bare(comp)} group "
            f"({pval(rng, 0.0001, 0.01)}). The reduction remained significant after adjustment for age and "
            f"comorbidity (odds ratio 0.{rng.randint(35, 65)}).",
            f"Compared with {comp}, {inter} significantly reduced {out} ({treated}% vs {base}%, "
            f"{pval(rng, 0.0001, 0.02)}), with a consistent benefit across all prespecified subgroups.",
        ])
        answer = f"{cap(inter)} significantly reduced {out} in {pop} compared with {comp}."
    elif label == "no":
        treated = base + rng.randint(-2, 2)
        results = rng.choice([
            f"{cap(out)} occurred in {treated}% of the {bare(inter)} group and {base}% of the {bare(comp)} group "
            f"({pval(rng, 0.35, 0.9)}). No difference was found in any secondary outcome.",
            f"Rates of {out} did not differ between {inter} and {comp} ({treated}% vs {base}%, "
            f"{pval(rng, 0.3, 0.95)}), and the adjusted odds ratio was close to one "
            f"(1.0{rng.randint(0, 9)}, 95% CI 0.{rng.randint(70, 85)}-1.{rng.randint(20, 40)}).",
        ])
        answer = f"{cap(inter)} did not reduce {out} in {pop}; outcomes were similar to {comp}."
    else:
        treated = base - rng.randint(3, 6)
        sub = rng.choice(SUBGROUPS)
        results = rng.choice([
            f"{cap(out)} was somewhat less frequent with {inter} ({treated}% vs {base}%), but the difference "
            f"did not reach significance ({pval(rng, 0.06, 0.09)}). In {sub}, the reduction was significant "
            f"({pval(rng, 0.01, 0.04)}), whereas no effect was seen in the remaining participants.",
            f"The trial stopped early because of slow recruitment. {cap(out)} was lower with {inter} "
            f"({treated}% vs {base}%; {pval(rng, 0.05, 0.12)}), and the confidence interval was wide and "
            f"compatible with both benefit and no effect.",
        ])
        answer = (f"{cap(inter)} may reduce {out} in {pop}, possibly only in some subgroups; the evidence "
                  f"is inconclusive and larger trials are needed.")
    return {"q": q, "background": background, "objective": objective, "methods": methods,
            "results": results, "answer": answer, "mesh": mesh + dmesh}


def exposure(rng: random.Random, label: str, pop: str, out: str, tags: str) -> dict:
    expo, mesh, _ = rng.choice(fits(EXPOSURES, tags))
    n = rng.randint(300, 4000)
    years = rng.choice([2, 3, 5])
    design, dmesh = rng.choice(DESIGNS["exposure"])
    q = rng.choice(["Is {e} associated with {o} in {p}?", "Does {e} increase the risk of {o} among {p}?",
                    "Is {e} a risk factor for {o} in {p}?"]).format(e=expo, o=out, p=pop)
    background = f"Several small studies suggested a link between {expo} and {out}, but the findings were inconsistent."
    objective = f"To examine whether {expo} is associated with {out} in {pop}."
    methods = (f"{design} {n} {pop} for {years} years. {cap(expo)} was recorded at baseline, and "
               f"multivariable regression adjusted for age, sex and comorbidity.")
    pct = rng.randint(12, 40)
    if label == "yes":
        hi = rng.randint(16, 30)
        results = rng.choice([
            f"{cap(expo)} was present in {pct}% of participants and was independently associated with {out} "
            f"(adjusted odds ratio {rng.randint(1, 2)}.{rng.randint(4, 9)}, 95% CI 1.{rng.randint(2, 3)}-"
            f"{rng.randint(3, 4)}.{rng.randint(0, 9)}; {pval(rng, 0.0001, 0.01)}).",
            f"Participants with {expo} had a clearly higher risk of {out} than those without it ({hi + 12}% vs "
            f"{hi}%, {pval(rng, 0.0001, 0.005)}), and a dose-response relationship was observed.",
        ])
        answer = f"{cap(expo)} is associated with a higher risk of {out} in {pop}."
    elif label == "no":
        results = rng.choice([
            f"{cap(expo)} was present in {pct}% of participants. After adjustment, it was not associated with "
            f"{out} (odds ratio 1.0{rng.randint(0, 6)}, 95% CI 0.{rng.randint(78, 90)}-1.{rng.randint(15, 30)}; "
            f"{pval(rng, 0.4, 0.9)}).",
            f"The incidence of {out} was similar in participants with and without {expo} "
            f"({pct}% vs {pct + rng.randint(-1, 1)}%, {pval(rng, 0.45, 0.95)}); no trend was observed.",
        ])
        answer = f"{cap(expo)} was not associated with {out} in {pop}."
    else:
        results = rng.choice([
            f"{cap(expo)} was associated with {out} in the unadjusted analysis ({pval(rng, 0.01, 0.04)}), but "
            f"the association was attenuated and no longer significant after adjustment ({pval(rng, 0.08, 0.2)}).",
            f"An association between {expo} and {out} was observed only in {rng.choice(SUBGROUPS)} "
            f"({pval(rng, 0.02, 0.045)}); in the full cohort the estimate was imprecise ({pval(rng, 0.07, 0.15)}).",
        ])
        answer = (f"{cap(expo)} might be linked to {out} in {pop}, but the association is weak and "
                  f"may be explained by confounding.")
    return {"q": q, "background": background, "objective": objective, "methods": methods,
            "results": results, "answer": answer, "mesh": mesh + dmesh}


def marker(rng: random.Random, label: str, pop: str, out: str, tags: str) -> dict:
    mark, mesh, _ = rng.choice(fits(MARKERS, tags))
    n = rng.randint(120, 900)
    design, dmesh = rng.choice(DESIGNS["marker"])
    q = rng.choice(["Can {m} predict {o} in {p}?", "Is {m} a useful predictor of {o} among {p}?",
                    "Does {m} identify {p} at risk of {o}?"]).format(m=mark, o=out, p=pop)
    background = (f"Early identification of {pop} at risk of {out} could guide care. "
                  f"{cap(mark)} is cheap and widely available.")
    objective = f"To evaluate the ability of {mark} to predict {out} in {pop}."
    methods = (f"{design} {n} {pop}. {cap(mark)} was measured at enrolment by staff blinded to outcomes; "
               f"discrimination was assessed with the area under the ROC curve (AUC).")
    if label == "yes":
        results = (f"{cap(out)} occurred in {rng.randint(10, 30)}% of participants. {cap(mark)} showed good "
                   f"discrimination (AUC 0.{rng.randint(82, 91)}), with a sensitivity of {rng.randint(80, 92)}% and "
                   f"a specificity of {rng.randint(76, 90)}%, and remained an independent predictor "
                   f"({pval(rng, 0.0001, 0.005)}).")
        answer = f"{cap(mark)} accurately predicts {out} in {pop}."
    elif label == "no":
        results = (f"{cap(out)} occurred in {rng.randint(10, 30)}% of participants. Discrimination of {mark} "
                   f"was poor (AUC 0.{rng.randint(50, 57)}), no better than chance, and it was not an independent "
                   f"predictor ({pval(rng, 0.3, 0.8)}).")
        answer = f"{cap(mark)} does not predict {out} in {pop}."
    else:
        results = (f"{cap(mark)} showed only moderate discrimination (AUC 0.{rng.randint(63, 69)}). It predicted "
                   f"{out} in {rng.choice(SUBGROUPS)} ({pval(rng, 0.02, 0.045)}) but not in the overall "
                   f"cohort ({pval(rng, 0.06, 0.12)}).")
        answer = (f"{cap(mark)} may help predict {out} in selected {pop}, but its accuracy is modest "
                  f"and needs confirmation.")
    return {"q": q, "background": background, "objective": objective, "methods": methods,
            "results": results, "answer": answer, "mesh": mesh + dmesh}


KINDS = {"treatment": treatment, "exposure": exposure, "marker": marker}


def build(seed: int = SEED) -> dict[str, dict]:
    rng = random.Random(seed)
    labels = [lab for lab, n in COUNTS.items() for _ in range(n)]
    rng.shuffle(labels)
    pmids = rng.sample(range(90_000_000, 99_999_999), len(labels))
    data, questions = {}, set()
    for pmid, label in zip(pmids, labels):
        while True:  # redraw until the question is new and the abstract is 80-180 words
            kind = rng.choice(list(KINDS))
            pop, pop_mesh, tags = rng.choice(POPULATIONS)
            out, out_mesh, _ = rng.choice(fits(OUTCOMES, tags))
            r = KINDS[kind](rng, label, pop, out, tags)
            sections = rng.choice([["BACKGROUND", "METHODS", "RESULTS"], ["OBJECTIVE", "METHODS", "RESULTS"],
                                   ["BACKGROUND", "OBJECTIVE", "METHODS", "RESULTS"], ["OBJECTIVE", "RESULTS"]])
            texts = {"BACKGROUND": r["background"], "OBJECTIVE": r["objective"], "METHODS": r["methods"],
                     "RESULTS": r["results"]}
            if sections == ["OBJECTIVE", "RESULTS"]:
                texts["RESULTS"] = r["methods"] + " " + r["results"]
            contexts = [texts[s] for s in sections]
            words = len(" ".join(contexts).split())
            if r["q"] not in questions and 80 <= words <= 180:
                break
        questions.add(r["q"])
        data[str(pmid)] = {
            "QUESTION": r["q"],
            "CONTEXTS": contexts,
            "LABELS": sections,
            "MESHES": sorted(set(["Humans"] + pop_mesh + out_mesh + r["mesh"])),
            "YEAR": str(rng.randint(2001, 2020)),
            "reasoning_required_pred": label,
            "reasoning_free_pred": label,
            "final_decision": label,
            "LONG_ANSWER": r["answer"],
        }
    return data


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB)")
