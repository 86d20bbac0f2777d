#!/usr/bin/env python3
# The privilege split, side by side: the helper backing up a 512 MiB store
# as root in-process, and for a user through its unprivileged worker (see
# docs/BENCHMARKS.md). Run as root after `cargo build --release`.
import subprocess, os, time, json, pwd, shutil, statistics
REL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release")
uid = pwd.getpwnam("persnap_tester").pw_uid
img="/var/tmp/bsplit.img"; mnt="/var/tmp/bsplitmnt"
subprocess.run(["truncate","-s2G",img],check=True)
dev=subprocess.check_output(["losetup","-f","--show",img]).decode().strip()
subprocess.run(["mkfs.btrfs","-q","-f",dev],check=True,stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL)
os.makedirs(mnt,exist_ok=True); subprocess.run(["mount",dev,mnt],check=True)
subprocess.run(["btrfs","-q","subvolume","create",mnt+"/apama"],check=True)
subprocess.run([os.path.join(REL, "persnap-loadgen"),"init",mnt+"/apama/persistence.db","--size-mb","512"],check=True,stdout=subprocess.DEVNULL)
reg="/var/lib/persnap-bench-reg"; shutil.rmtree(reg,ignore_errors=True); os.makedirs(reg+"/databases"); os.chmod(reg,0o755); os.chmod(reg+"/databases",0o755)
json.dump({"name":"bench","folder":mnt+"/apama","store_name":"persistence.db"},open(reg+"/databases/bench.json","w"))
dest="/var/tmp/bsplitdest"; shutil.rmtree(dest,ignore_errors=True); os.makedirs(dest); os.chown(dest,uid,uid)
frame=json.dumps({"version":2,"type":"backup","source":mnt+"/apama","dest":dest,"store_name":"persistence.db","method":"auto","options":{"online_timeout_secs":60,"snapshot_size":None}})+"\n"
def run(split):
    env={"PATH":"/usr/bin:/bin","PERSNAP_REGISTRY_DIR":reg+"/databases"}
    args=[os.path.join(REL, "persnap-helper")]
    if split: env["PKEXEC_UID"]=str(uid); args.append("backup")
    subprocess.run(["sync"]); open("/proc/sys/vm/drop_caches","w").write("3")
    t=time.time()
    p=subprocess.Popen(args,stdin=subprocess.PIPE,stdout=subprocess.PIPE,env=env)
    p.stdin.write(frame.encode()); p.stdin.flush()
    last=b""
    for line in p.stdout:
        last=line
        if b'"type":"done"' in line or b'"type":"error"' in line: break
    dt=time.time()-t
    p.stdin.close(); rc=p.wait()
    assert rc==0, (rc, last[-300:])
    for n in os.listdir(dest): shutil.rmtree(os.path.join(dest,n))
    return dt
res={"root in-process":[], "worker as user":[]}
for i in range(3):
    res["root in-process"].append(run(False)); res["worker as user"].append(run(True))
for k,v in res.items(): print(k, ["%.2f"%x for x in v], "median %.2f s"%statistics.median(v))
print("ratio worker/root %.2f"%(statistics.median(res["worker as user"])/statistics.median(res["root in-process"])))
subprocess.run(["umount",mnt]); subprocess.run(["losetup","-d",dev]); os.remove(img); shutil.rmtree(reg)
