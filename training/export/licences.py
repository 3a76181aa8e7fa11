"""The data sets weights may derive from, how to tell which a run used, and the licence that follows."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

LICENSE_PERMISSIVE = "cc-by-4.0"

LICENSE_NON_COMMERCIAL = "cc-by-nc-4.0"


@dataclass(frozen=True)
class DatasetInfo:
    """A data set the weights may derive from: what the card says about it."""

    key: str
    name: str
    what: str
    license: str
    non_commercial: bool
    url: str
    citation: str
    markers: tuple[str, ...]  # lower-case strings whose presence in a pretraining summary means the set was used


DATASETS = {
    info.key: info
    for info in (
        DatasetInfo(
            key="bus_bra",
            name="BUS-BRA",
            what="1,875 biopsy-proven breast ultrasound images (1,268 benign, 607 malignant) of 1,064 patients, "
            "Brazil, with the official patient-grouped cross-validation folds",
            license="permissive (MIT-style), citation required",
            non_commercial=False,
            url="https://doi.org/10.1002/mp.16812",
            citation='W. Gómez-Flores, M. J. Gregorio-Calas, W. C. de Albuquerque Pereira, "BUS-BRA: A Breast '
            'Ultrasound Dataset for Assessing Computer-aided Diagnosis Systems", Medical Physics 51(4):3110–3123, '
            "2024, doi:10.1002/mp.16812",
            markers=("bus_bra", "bus-bra", "busbra"),
        ),
        DatasetInfo(
            key="covid_blues",
            name="COVID-BLUES",
            what="115 lung ultrasound clips of 20 patients (6 scan points each)",
            license="CC BY-NC-ND 4.0",
            non_commercial=True,
            url="https://github.com/NinaWie/COVID-BLUES",
            citation="N. Wiedemann et al., COVID-BLUES lung ultrasound dataset, IEEE Journal of Biomedical and "
            "Health Informatics, 2025",
            markers=("covid_blues", "covid-blues", "covidblues"),
        ),
        DatasetInfo(
            key="pocus",
            name="POCUS (CC BY 4.0 part)",
            what="39 lung ultrasound clips of 9 patients (convex and linear probes)",
            license="CC BY 4.0",
            non_commercial=False,
            url="https://github.com/jannisborn/covid19_ultrasound",
            citation='J. Born et al., "Accelerating detection of lung pathologies with explainable ultrasound image '
            'analysis", Applied Sciences 11(2):672, 2021',
            markers=("pocus",),
        ),
    )
}


def detect_datasets(text: str) -> list[str]:
    """Keys of `DATASETS` whose markers occur in `text` (case-insensitive), in `DATASETS` order."""
    lowered = text.lower()
    return [key for key, info in DATASETS.items() if any(marker in lowered for marker in info.markers)]


def choose_license(dataset_keys: Iterable[str]) -> tuple[str, str]:
    """(Hub licence id, one-paragraph explanation) for weights derived from these data sets."""
    used = [DATASETS[key] for key in dataset_keys]
    non_commercial = [info.name for info in used if info.non_commercial]
    if non_commercial:
        return LICENSE_NON_COMMERCIAL, (
            f"The weights derive from {', '.join(non_commercial)}, which is licensed for non-commercial use only "
            f"({', '.join(info.license for info in used if info.non_commercial)}). They are therefore released "
            "under CC BY-NC 4.0: research and other non-commercial use only, with attribution of every data set "
            "below. The code is Apache-2.0."
        )
    return LICENSE_PERMISSIVE, (
        "The weights derive only from data sets that allow redistribution with attribution "
        f"({', '.join(f'{info.name}: {info.license}' for info in used)}); they are released under CC BY 4.0, "
        "and anyone using them must cite the data sets below. The code is Apache-2.0."
    )


def dataset_entries(keys: Iterable[str], role: str) -> list[dict[str, str]]:
    """Card rows for the data sets in `keys`, tagged with what they were used for."""
    return [{**DATASETS[key].__dict__, "role": role} for key in keys]


__all__ = ["DATASETS", "DatasetInfo", "choose_license", "dataset_entries", "detect_datasets"]
