"""Running a sweep: the search space, the study, its budget, and one trial lifecycle."""
