"""Truth objects of a Pythia hard process: outgoing partons, W/Z bosons and tops with their decay quarks."""

import numpy as np

from l1forge.events.substructure import pt_eta_phi, wrap_phi

QUARK_LABEL, GLUON_LABEL = "q", "g"
_BOSON_LABEL = {23: "z", 24: "w"}


class EventRecord:
    """Numpy views of one event of a `pythia.nextBatch` record (ids, statuses, mothers, daughters, momenta)."""

    def __init__(self, ids, status, mother1, daughter1, daughter2, px, py, pz):
        self.ids, self.status, self.mother1 = ids, status, mother1
        self.daughter1, self.daughter2 = daughter1, daughter2
        _, self.eta, self.phi = pt_eta_phi(px, py, pz)

    def daughters(self, i):
        d1, d2 = self.daughter1[i], self.daughter2[i]
        if d1 <= 0:
            return []
        if d2 <= 0 or d2 == d1:
            return [d1]
        return list(range(d1, d2 + 1)) if d2 > d1 else [d1, d2]

    def bottom_copy(self, i):
        """Last copy of particle i, following recoil and radiation copies of the same id (Pythia's iBotCopyId)."""
        while True:
            same = [d for d in self.daughters(i) if self.ids[d] == self.ids[i]]
            if len(same) != 1:
                return i
            i = same[0]

    def decay_quarks(self, i):
        """Final-state-of-decay quarks of a W/Z/top at entry i (for a top: b and the W's quarks), or None."""
        dau = self.daughters(self.bottom_copy(i))
        quarks = [d for d in dau if 1 <= abs(self.ids[d]) <= 5]
        ws = [d for d in dau if abs(self.ids[d]) == 24]
        for w in ws:
            w_quarks = self.decay_quarks(w)
            if w_quarks is None:
                return None
            quarks += w_quarks
        expected = 3 if abs(self.ids[i]) == 6 else 2
        return quarks if len(quarks) == expected else None

    def truth_objects(self):
        """[(label, eta, phi, decay-quark etas, decay-quark phis)] for the outgoing hard-process particles."""
        objects = []
        for i in np.flatnonzero(self.mother1 == 3):
            pid = abs(int(self.ids[i]))
            if pid == 21 or 1 <= pid <= 4:
                label, quarks, axis = GLUON_LABEL if pid == 21 else QUARK_LABEL, [], i
            elif pid in (6, 23, 24):
                label, quarks, axis = _BOSON_LABEL.get(pid, "t"), self.decay_quarks(i), self.bottom_copy(i)
                if quarks is None:
                    continue
            else:
                continue
            objects.append((label, self.eta[axis], self.phi[axis], self.eta[quarks], self.phi[quarks]))
        return objects


def match_label(jet_eta, jet_phi, objects, r_match):
    """Label of the nearest truth object within r_match of the jet whose decay quarks all lie within r_match, else None."""
    best, best_dr = None, r_match
    for label, eta, phi, q_eta, q_phi in objects:
        dr = np.hypot(jet_eta - eta, wrap_phi(jet_phi - phi))
        if dr < best_dr:
            best, best_dr = (label, q_eta, q_phi), dr
    if best is None:
        return None
    label, q_eta, q_phi = best
    contained = np.all(np.hypot(jet_eta - q_eta, wrap_phi(jet_phi - q_phi)) < r_match)
    return label if contained else None
