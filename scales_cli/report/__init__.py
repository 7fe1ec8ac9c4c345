"""``scales report``'s library side: build a comparison (models x datasets), then render it.

* :mod:`.build`    load models, group them by scale, evaluate each row on each dataset, count costs
* :mod:`.render`   rich tables, a Markdown table and the JSON document (docs/report-json.md)
* :mod:`.pictures` side-by-side crops (HR | bicubic | each model) where the models differ most
"""
