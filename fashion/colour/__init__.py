"""The garment's colour computed from its photo: a fixed palette of colour families (:mod:`.palette`),
the garment separated from its background (:mod:`.garment`), the room's light taken out of its colours
(:mod:`.constancy`), its dominant colours (:mod:`.dominant`) and a
table of colour columns for a list of photos (:mod:`.table`)."""
