from b3_st import B3BatchSampler, B3Config


def test_tiny_teacher_sampler_builds(tiny_teacher_path, wordnet_small):
    sampler = B3BatchSampler(wordnet_small, batch_size=64, drop_last=False,
                             config=B3Config(teacher=tiny_teacher_path, show_progress_bar=False))
    rows = sorted(row for batch in sampler for row in batch)
    assert rows == list(range(len(wordnet_small)))
