"""The live station page: one HTML page that polls `/state.json` once a second.

Served on the bench's own Flask and waitress (bench.server.serve.start), on loopback unless the
rig's `station.ui_host` says otherwise. The page is self-contained (inline CSS and script, no CDN,
no font or image fetched), so it works on a bench PC with no internet; it only reads, so it has no
form and no route that changes anything."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, Response, jsonify

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>paygo-bench: starting</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
header{padding:14px 20px;background:#1d2330;color:#fff;display:flex;gap:18px;align-items:center;flex-wrap:wrap}
#verdict{font-size:28px;font-weight:700;padding:6px 16px;border-radius:6px;background:#5b6478}
#verdict.PASSED{background:#1e8e3e}#verdict.FAILED{background:#c5221f}
#verdict.INCOMPLETE{background:#b06000}#verdict.BENCH_ERROR{background:#7b1fa2}#verdict.RUNNING{background:#1a73e8}
.meta{font-size:14px;line-height:1.5}.meta b{font-weight:600}
main{display:grid;grid-template-columns:minmax(0,3fr) minmax(0,2fr);gap:14px;padding:14px 20px}
section{background:#fff;border-radius:6px;padding:10px 14px;box-shadow:0 1px 2px #0002}
h2{font-size:15px;margin:2px 0 8px}
table{border-collapse:collapse;width:100%;font-size:13px}td,th{text-align:left;padding:3px 6px;border-bottom:1px solid #e3e5ea}td{overflow-wrap:anywhere}
.PASS,.passed{color:#1e8e3e}.FAIL,.failed{color:#c5221f;font-weight:600}.skipped,.RECORDED{color:#5b6478}
pre{font-size:12px;max-height:320px;overflow:auto;background:#0f1420;color:#d7dbe4;padding:8px;border-radius:4px;margin:0}
#bar{height:8px;background:#e3e5ea;border-radius:4px;overflow:hidden;margin:6px 0}#bar div{height:100%;background:#1a73e8}
.big{font-size:22px;font-weight:600;overflow-wrap:anywhere}#stale{color:#b06000;font-size:13px}
</style></head><body>
<header><div id="verdict" class="RUNNING">STARTING</div>
<div class="meta"><div><b>Station</b> <span id="station"></span> &middot; <b>DUT</b> <span id="dut"></span>
 &middot; <b>Suite</b> <span id="suite"></span></div>
<div><b>Progress</b> <span id="progress"></span> &middot; <b>Elapsed</b> <span id="elapsed"></span>
 <span id="stale"></span></div><div id="verdictline"></div></div></header>
<main>
<div>
<section><h2>Now</h2><div id="current" class="big">-</div><div id="bar"><div style="width:0"></div></div></section>
<section><h2>Measurements</h2><table><thead><tr><th>test</th><th>name</th><th>value</th><th>limits</th>
<th>outcome</th></tr></thead><tbody id="measurements"></tbody></table></section>
<section><h2>Tests</h2><table><tbody id="outcomes"></tbody></table></section>
</div>
<div>
<section><h2>Power supply</h2><div id="psu" class="big">-</div><div id="psuat"></div></section>
<section><h2>Serial (secrets masked)</h2><pre id="serial"></pre></section>
<section><h2>Metrics server: devices</h2><table><thead><tr><th>serial</th><th>requests</th><th>accepted</th>
<th>refused</th><th>token count</th><th>last tokens served</th></tr></thead><tbody id="metrics"></tbody></table></section>
</div></main>
<script>
"use strict";
function el(id){return document.getElementById(id);}
function cell(row,text,cls){var td=document.createElement("td");td.textContent=text;if(cls){td.className=cls;}row.appendChild(td);}
function rows(id,items,cells){var body=el(id);body.textContent="";items.forEach(function(it){
 var tr=document.createElement("tr");cells(it).forEach(function(c){cell(tr,c[0],c[1]);});body.appendChild(tr);});}
function show(s){
 var v=s.verdict||(s.serving?"SERVING":"RUNNING");var badge=el("verdict");badge.textContent=v;badge.className=v.replace(" ","_");
 document.title=v+" \\u00b7 "+s.station+" \\u00b7 paygo-bench";
 el("station").textContent=s.station;el("dut").textContent=s.dut_serial||"-";el("suite").textContent=s.suite;
 el("progress").textContent=s.serving?"no run: the Metrics server's devices":(s.done+" of "+s.total+" tests");el("elapsed").textContent=s.elapsed_s.toFixed(0)+" s";
 el("verdictline").textContent=s.verdict_line||"";
 el("current").textContent=s.current?(s.current+" ("+s.current_elapsed_s.toFixed(0)+" s)"):(s.verdict?"finished":"-");
 el("bar").firstElementChild.style.width=(s.total?100*s.done/s.total:0)+"%";
 var p=s.psu;el("psu").textContent=!p?"-":(p.error?p.error:((p.output_on?"ON  ":"OFF  ")+p.volts.toFixed(3)+" V  "+p.amps.toFixed(4)+" A"));
 el("psuat").textContent=p?("read "+p.at):"";
 el("serial").textContent=s.serial.join("\\n");el("serial").scrollTop=1e9;
 rows("measurements",s.measurements.slice(0,60),function(m){return [[(m.test||"").split("::").pop()],[m.name],[m.value],[m.limits],[m.outcome,m.outcome]];});
 rows("outcomes",s.outcomes.slice().reverse(),function(o){return [[o.test],[o.outcome,o.outcome],[o.duration_s+" s"]];});
 rows("metrics",s.metrics,function(d){return [[d.serial],[String(d.requests)],[String(d.accepted)],[String(d.refused)],
  [d.token_count===null?"-":String(d.token_count)],[d.last_tokens.join(" ")]];});
}
var last=0;
function poll(){fetch("state.json",{cache:"no-store"}).then(function(r){return r.json();}).then(function(s){
 last=Date.now();el("stale").textContent="";show(s);if(!s.verdict){setTimeout(poll,1000);}
}).catch(function(){el("stale").textContent=last?"(the run's page server has stopped: last state shown)":"(waiting for the run)";
 setTimeout(poll,2000);});}
poll();
</script></body></html>
"""


def create_page_app(snapshot: Callable[[], dict]) -> Flask:
    """The page's app: `/` the page, `/state.json` the run now."""
    app = Flask("bench.live")

    @app.get("/")
    def page() -> Response:
        return Response(PAGE, content_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"})

    @app.get("/state.json")
    def state() -> Response:
        response = jsonify(snapshot())
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/favicon.ico")
    def favicon() -> Response:  # browsers ask for one: answer, so no console error shows
        return Response(b"", status=204)

    return app
