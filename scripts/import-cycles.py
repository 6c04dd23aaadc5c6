#!/usr/bin/env python3
"""Lists import circles between the files of src/ (a file naming another
through crate::/super::/self:: paths), and any import from the sans-I/O
engines (http/) of a room above them: they may name only http/ itself,
sys/ and fuzzing (its test helpers), and tell the rest of the process
what happened through http::events. Exits 1 if either is found. Run from
the repository root."""
import os,re,sys,itertools
root='src'
mods={}
for dp,dn,fn in os.walk(root):
    for f in fn:
        if not f.endswith('.rs'): continue
        p=os.path.join(dp,f)
        rel=os.path.relpath(p,root)[:-3]
        parts=rel.split('/')
        if parts[-1]=='mod': parts=parts[:-1]
        if parts==['lib'] or parts==['main']: parts=[]
        mods['::'.join(parts)]=p
def resolve(cur, path):
    # cur: module path list; path: list of segments after use
    segs=path
    if segs[0]=='crate': base=[]; segs=segs[1:]
    elif segs[0]=='super':
        base=cur[:]
        while segs and segs[0]=='super':
            base=base[:-1]; segs=segs[1:]
    elif segs[0]=='self': base=cur[:]; segs=segs[1:]
    else: return None
    full=base+segs
    # longest prefix that is a module
    for n in range(len(full),-1,-1):
        k='::'.join(full[:n])
        if k in mods: return k
    return None
edges={}
for m,p in mods.items():
    cur=m.split('::') if m else []
    # a file's own module path; for non-mod files, super refers to parent
    src=open(p).read()
    pass
    deps=set()
    for mt in re.finditer(r'\b((?:crate|super|self)(?:::\w+)+)',src):
        segs=mt.group(1).split('::')
        # for a file module, `super` is its parent module
        r=resolve(cur,segs)
        if r is not None and r!=m and not m.startswith(r+'::') and not r.startswith(m+'::') and r!='':
            deps.add(r)
    edges[m]=deps
# find cycles (SCCs)
index={};low={};st=[];on=set();res=[];i=[0]
sys.setrecursionlimit(10000)
def sc(v):
    index[v]=low[v]=i[0];i[0]+=1;st.append(v);on.add(v)
    for w in edges.get(v,()):
        if w not in index: sc(w);low[v]=min(low[v],low[w])
        elif w in on: low[v]=min(low[v],index[w])
    if low[v]==index[v]:
        comp=[]
        while True:
            w=st.pop();on.discard(w);comp.append(w)
            if w==v:break
        if len(comp)>1: res.append(comp)
for v in edges:
    if v not in index: sc(v)
for c in res: print('cycle:',sorted(c))
# The engine's floor: what http/ may name besides itself.
below = ('http', 'sys', 'fuzzing')
upward = sorted((m, d) for m, deps in edges.items() if m == 'http' or m.startswith('http::')
                for d in deps if d.split('::')[0] not in below)
for m, d in upward: print('upward:', m, '->', d)
print('modules',len(mods),'cycles',len(res),'upward from http',len(upward))
sys.exit(1 if res or upward else 0)
