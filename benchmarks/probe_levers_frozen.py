"""Cheap lever probe on frozen pretrained features (not a benchmark): a fastai-style head
(BN-drop-Linear(512)-ReLU-BN-drop-Linear) trained on pooled Lite2 body features with CE, CE+label
smoothing, CE+SupCon; valid top-1 and valid-vs-train P@10 of the penultimate features."""
import sys, time, numpy as np, torch
from torch import nn
sys.path.insert(0, ".")
from fashion import datasets
from fashion.embedding import Embedder
from fashion.metrics import precision_at_k  # noqa
torch.manual_seed(0)
items = datasets.load("/work/shared/data/clothing-dataset-small", format="folder")
emb = Embedder.from_backbone("efficientnet_lite2", runtime="torch", precision="fp32")
t0 = time.time()
res = emb.embed(items, cache_dir="out/cache", num_workers=0, progress=False)
print("embedded", len(items), "in", round(time.time() - t0), "s", flush=True)
X = torch.tensor(res.vectors) * 10
classes = sorted(items.label.unique()); y = torch.tensor(items.label.map({c: i for i, c in enumerate(classes)}).to_numpy())
split = items.split.to_numpy()
tr, va = np.where(split == "train")[0], np.where(np.isin(split, ["valid", "validation"]))[0]
from pytorch_metric_learning import losses
def head():
    return nn.Sequential(nn.BatchNorm1d(X.shape[1]), nn.Dropout(0.25), nn.Linear(X.shape[1], 512), nn.ReLU(),
                         nn.BatchNorm1d(512), nn.Dropout(0.5), nn.Linear(512, len(classes)))
def p_at_10(q, g, yq, yg):
    q = nn.functional.normalize(q, dim=1); g = nn.functional.normalize(g, dim=1)
    idx = (q @ g.T).topk(10, dim=1).indices
    return float((yg[idx] == yq[:, None]).float().mean())
for name, eps, w in [("ce", 0, 0), ("ls0.1", 0.1, 0), ("ce+supcon0.1", 0, 0.1), ("ce+supcon0.5", 0, 0.5), ("ce+supcon1", 0, 1.0)]:
    torch.manual_seed(0)
    m = head(); opt = torch.optim.AdamW(m.parameters(), 2e-3, weight_decay=0.01)
    ce = nn.CrossEntropyLoss(label_smoothing=eps); sc = losses.SupConLoss(temperature=0.1)
    feats = {}
    m[-1].register_forward_pre_hook(lambda mod, inp: feats.__setitem__("f", inp[0]))
    for epoch in range(15):
        m.train(); perm = tr[torch.randperm(len(tr)).numpy()]
        for s in range(0, len(perm), 32):
            b = perm[s:s + 32]
            out = m(X[b]); loss = ce(out, y[b]) + (w * sc(feats["f"], y[b]) if w else 0)
            opt.zero_grad(); loss.backward(); opt.step()
    m.eval()
    with torch.no_grad():
        acc = float((m(X[va]).argmax(1) == y[va]).float().mean())
        m(X[va]); fq = feats["f"]; m(X[tr]); fg = feats["f"]
    print(f"{name:14} valid top-1 {acc:.3f}  valid-vs-train P@10 (penultimate) {p_at_10(fq, fg, y[va], y[tr]):.3f}", flush=True)
print("pooled body valid-vs-train P@10", round(p_at_10(X[va], X[tr], y[va], y[tr]), 3))
