/* dfm studio page: plain ES2017, no build step, no network beyond this server.
 *
 * The server pushes what changed as server-sent events (scene, preview, output, render, sweep); the page
 * fetches the JSON it needs and redraws. One "chosen frame" ties the views together: hovering a chart,
 * the slider or Play sets it, and the preview image, the values table (exact values from /api/frame/K),
 * the prompt in force and the sweep grid's cells all follow it.
 */
(function () {
  'use strict';

  var PALETTE = ['#f0a33a', '#5cb8ff', '#5ccf8a', '#ff6b9a', '#c792ea', '#ffd166', '#4dd0c8', '#ff8a5c'];
  // busy charts start with these off: the waveform, onsets, loudness and beats read at a glance
  var HIDDEN_AT_FIRST = { audio_beat_phase: true, audio_low: true, audio_mid: true, audio_high: true };
  var state = {
    scene: null, generation: -1, chosen: 0, charts: [], syncing: false,
    preview: null, output: null, sweep: null, sweepCells: [], playTimer: null,
    valuesWanted: null, valuesBusy: false, lastValues: null,
  };
  window.studio = state; // for the tests and the browser console

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function getJSON(url) {
    return fetch(url, { cache: 'no-store' }).then(function (r) {
      if (!r.ok) throw new Error(url + ': HTTP ' + r.status);
      return r.json();
    });
  }

  function pad5(k) { return String(k).padStart(5, '0'); }

  function fmt(v) {
    if (v === null || v === undefined) return '—';
    if (typeof v === 'number') return Number.isInteger(v) ? String(v) : String(+v.toPrecision(7));
    return String(v);
  }

  function hue(i) { return 'hsla(' + ((i * 67) % 360) + ', 55%, 55%, '; }

  // ---- the scene --------------------------------------------------------------------------------------

  function loadScene() {
    return getJSON('/api/scene').then(function (scene) {
      $('scene-name').textContent = scene.name;
      $('scene-summary').textContent = scene.summary || '';
      if (!scene.ok) { showErrors(scene); return; }
      hideErrors();
      var first = state.scene === null;
      state.scene = scene;
      state.generation = scene.generation;
      buildCharts(scene);
      listPrompts(scene);
      var slider = $('frame-slider');
      slider.max = String(Math.max(0, scene.frames - 1));
      setAudio(scene);
      var k = Math.min(state.chosen, scene.frames - 1);
      chooseFrame(first ? 0 : k, 'scene');
    }).catch(function (err) { setStatus('scene: ' + err.message); });
  }

  function showErrors(scene) {
    $('error-panel').hidden = false;
    $('diagnostics').textContent = scene.diagnostics;
    $('diagnostics-summary').textContent = scene.summary || '';
    document.body.classList.add('stale');
  }

  function hideErrors() {
    $('error-panel').hidden = true;
    $('diagnostics').textContent = '';
    document.body.classList.remove('stale');
  }

  function listPrompts(scene) {
    var ol = $('prompts');
    ol.textContent = '';
    scene.prompts.forEach(function (b, i) {
      var li = el('li', { 'data-start': b.start, 'data-end': b.end });
      li.appendChild(el('span', { class: 'frames' }, 'frames ' + b.start + '–' + b.end));
      li.appendChild(el('span', { class: 'text' }, b.text));
      li.style.borderLeft = '4px solid ' + hue(i) + '0.9)';
      li.style.paddingLeft = '.4rem';
      ol.appendChild(li);
    });
    var neg = scene.negative_prompts.map(function (b) { return b.text; }).filter(Boolean);
    $('negative-prompts').textContent = neg.length ? 'negative: ' + neg.join(' · ') : '';
  }

  // ---- charts (uPlot) -----------------------------------------------------------------------------------

  function chartWidth() { return Math.max(300, $('charts').clientWidth - 4); }

  function axes() {
    var common = { stroke: '#9aa0ab', grid: { stroke: '#2a2e37', width: 1 }, ticks: { stroke: '#2a2e37', width: 1 } };
    return [Object.assign({}, common), Object.assign({ size: 56 }, common)];
  }

  function drawBands(u) {
    var scene = state.scene;
    if (!scene) return;
    var ctx = u.ctx, top = u.bbox.top, h = u.bbox.height;
    ctx.save();
    scene.prompts.forEach(function (b, i) {
      var x0 = u.valToPos(b.start - 0.5, 'x', true), x1 = u.valToPos(b.end + 0.5, 'x', true);
      ctx.fillStyle = hue(i) + '0.08)';
      ctx.fillRect(x0, top, x1 - x0, h);
    });
    ctx.restore();
  }

  function drawTimeline(u) {
    var scene = state.scene;
    if (!scene) return;
    var ctx = u.ctx, top = u.bbox.top, h = u.bbox.height, dpr = window.devicePixelRatio || 1;
    ctx.save();
    ctx.font = (11 * dpr) + 'px system-ui, sans-serif';
    ctx.textBaseline = 'middle';
    ctx.textAlign = 'left'; // uPlot leaves the axes' alignment on the context
    scene.prompts.forEach(function (b, i) {
      var x0 = u.valToPos(b.start - 0.5, 'x', true), x1 = u.valToPos(b.end + 0.5, 'x', true);
      ctx.fillStyle = hue(i) + '0.35)';
      ctx.fillRect(x0, top + h * 0.2, x1 - x0, h * 0.45);
      var left = Math.max(x0, u.bbox.left), right = Math.min(x1, u.bbox.left + u.bbox.width);
      if (right - left < 12 * dpr) return;
      ctx.save();
      ctx.beginPath();
      ctx.rect(left, top, right - left, h);
      ctx.clip();
      ctx.fillStyle = '#e4e6eb';
      ctx.fillText(b.text, left + 4 * dpr, top + h * 0.425);
      ctx.restore();
    });
    ctx.fillStyle = '#5cb8ff';
    scene.diffused.forEach(function (f) {
      ctx.fillRect(u.valToPos(f, 'x', true), top + h * 0.72, Math.max(1, dpr), h * 0.2);
    });
    ctx.fillStyle = '#f0a33a';
    scene.beats.forEach(function (f) {
      ctx.fillRect(u.valToPos(f, 'x', true), top, Math.max(1, dpr), h * 0.15);
    });
    ctx.restore();
  }

  function drawBeats(u) {
    var scene = state.scene;
    if (!scene || !scene.beats.length) return;
    var ctx = u.ctx;
    ctx.save();
    ctx.fillStyle = 'rgba(240, 163, 58, 0.45)';
    scene.beats.forEach(function (f) {
      ctx.fillRect(u.valToPos(f, 'x', true), u.bbox.top, 1, u.bbox.height);
    });
    ctx.restore();
  }

  function onCursor(u) {
    if (state.syncing || !state.scene) return;
    var idx = u.cursor.idx;
    if (idx === null || idx === undefined) return;
    var frame = state.scene.x[idx];
    if (frame !== undefined) chooseFrame(frame, 'chart');
  }

  function onScale(u, key) {
    if (key !== 'x' || state.syncing) return;
    var min = u.scales.x.min, max = u.scales.x.max;
    state.syncing = true;
    state.charts.forEach(function (c) { if (c !== u) c.setScale('x', { min: min, max: max }); });
    state.syncing = false;
  }

  function chartOptions(title, series, height, hooks) {
    return {
      title: title, width: chartWidth(), height: height, series: series, axes: axes(),
      scales: { x: { time: false } },
      cursor: { sync: { key: 'dfm', setSeries: false }, drag: { x: true, y: false }, points: { size: 5 } },
      legend: { live: true },
      hooks: Object.assign({ setCursor: [onCursor], setScale: [onScale] }, hooks || {}),
    };
  }

  function timelineChart(scene, box) {
    var wrap = el('div', { class: 'chart', 'data-chart': 'timeline' });
    box.appendChild(wrap);
    var empty = scene.x.map(function () { return null; });
    var opts = chartOptions('prompts · diffused frames · beats', [{ label: 'frame' }, { label: 'prompt', show: true, stroke: 'transparent', points: { show: false } }], 96, { draw: [drawTimeline] });
    opts.scales.y = { range: [0, 1] };
    opts.axes[1].show = false;
    opts.legend.show = false;
    return new uPlot(opts, [scene.x, empty], wrap);
  }

  function groupChart(scene, group, box, gi) {
    var wrap = el('div', { class: 'chart', 'data-chart': group.title });
    box.appendChild(wrap);
    var series = [{ label: 'frame' }];
    group.columns.forEach(function (name, i) {
      var s = { label: name, stroke: PALETTE[(gi * 3 + i) % PALETTE.length], width: 1.5, points: { show: false } };
      if (name === 'waveform') { s.stroke = 'rgba(154,160,171,0.7)'; s.fill = 'rgba(154,160,171,0.25)'; s.width = 1; }
      if (name === 'audio_beat') { s.paths = uPlot.paths.stepped({ align: 1 }); }
      if (HIDDEN_AT_FIRST[name]) s.show = false; // a click on its legend entry shows it
      series.push(s);
    });
    var data = [scene.x].concat(group.columns.map(function (name) { return scene.series[name]; }));
    var hooks = { drawClear: [drawBands] };
    if (group.title === 'audio') hooks.draw = [drawBeats];
    return new uPlot(chartOptions(group.title, series, 150, hooks), data, wrap);
  }

  function buildCharts(scene) {
    state.charts.forEach(function (c) { c.destroy(); });
    state.charts = [];
    var box = $('charts');
    box.textContent = '';
    if (!scene.frames) return;
    state.charts.push(timelineChart(scene, box));
    scene.groups.forEach(function (g, gi) { state.charts.push(groupChart(scene, g, box, gi)); });
    if (!scene.groups.length) box.appendChild(el('p', { class: 'muted' }, 'no schedule changes over the scene'));
  }

  function moveCursors(k) {
    var c = state.charts[0];
    if (!c) return;
    state.syncing = true;
    c.setCursor({ left: c.valToPos(k, 'x'), top: c.bbox.height / (window.devicePixelRatio || 1) / 2 });
    state.syncing = false;
  }

  window.addEventListener('resize', function () {
    var w = chartWidth();
    state.charts.forEach(function (c) { c.setSize({ width: w, height: c.height }); });
  });

  // ---- the chosen frame -------------------------------------------------------------------------------

  function chooseFrame(k, source) {
    var scene = state.scene;
    if (!scene || !scene.frames) return;
    k = Math.max(0, Math.min(scene.frames - 1, Math.round(k)));
    if (k === state.chosen && source !== 'scene' && source !== 'preview') return;
    state.chosen = k;
    $('frame-slider').value = String(k);
    $('frame-number').textContent = String(k);
    $('chosen-frame').textContent = String(k);
    $('chosen-time').textContent = (k / scene.fps).toFixed(2) + ' s';
    if (source !== 'chart') moveCursors(k);
    showPreviewFrame(k);
    showSweepFrame(k);
    markPrompt(k);
    wantValues(k);
  }

  function markPrompt(k) {
    Array.prototype.forEach.call($('prompts').children, function (li) {
      var on = +li.dataset.start <= k && k <= +li.dataset.end;
      li.classList.toggle('current', on);
    });
  }

  // exact values come from the server (the charts may hold a downsampled table); the latest request wins
  function wantValues(k) {
    state.valuesWanted = k;
    if (state.valuesBusy) return;
    state.valuesBusy = true;
    var asked = k;
    getJSON('/api/frame/' + asked).then(function (data) {
      showValues(data);
    }).catch(function () { /* a newer scene took over; the next request answers */ }).then(function () {
      state.valuesBusy = false;
      if (state.valuesWanted !== asked || (state.lastValues && state.lastValues.generation !== state.generation)) {
        wantValues(state.valuesWanted);
      }
    });
  }

  function showValues(data) {
    var table = $('values'), body = table.tBodies[0];
    var names = Object.keys(data.values);
    var varying = {};
    if (state.scene) Object.keys(state.scene.series).forEach(function (n) { varying[n] = true; });
    if (body.rows.length !== names.length || body.dataset.generation !== String(data.generation)) {
      body.textContent = '';
      names.forEach(function (name) {
        var tr = el('tr', { 'data-column': name });
        if (varying[name]) tr.className = 'varies';
        tr.appendChild(el('th', { scope: 'row' }, name));
        tr.appendChild(el('td'));
        body.appendChild(tr);
      });
      body.dataset.generation = String(data.generation);
    }
    Array.prototype.forEach.call(body.rows, function (tr) {
      var v = data.values[tr.dataset.column];
      var td = tr.cells[1];
      td.textContent = fmt(v);
      td.dataset.value = v === null ? '' : String(v);
    });
    var prompt = data.values.prompt;
    var blend = data.values.prompt_blend;
    var from = data.values.prompt_from;
    $('chosen-prompt').textContent = prompt === undefined ? '' :
      (blend !== undefined && blend < 1 && from !== prompt ? from + '  →  ' + prompt + ' (' + fmt(blend) + ')' : prompt);
    table.dataset.frame = String(data.frame);
    state.lastValues = data;
  }

  // ---- the motion preview -------------------------------------------------------------------------------

  function setPreview(info) {
    if (info && info.error) { $('preview-status').textContent = 'preview failed: ' + info.error; return; }
    state.preview = info;
    if (!info) return;
    $('preview-status').textContent = 'preview of ' + info.frames + ' frames at ' + info.fps + ' fps' +
      (info.stride > 1 ? ' (every ' + info.stride + 'th frame)' : '');
    showPreviewFrame(state.chosen);
  }

  function showPreviewFrame(k) {
    var info = state.preview, img = $('preview-frame');
    if (!info || k >= info.frames) return;
    img.src = '/api/preview/' + (k - (k % info.stride)) + '.jpg?g=' + info.generation;
    img.hidden = false;
  }

  function setAudio(scene) {
    var audio = $('preview-audio');
    var url = scene.audio_url ? '/files/audio/' + scene.audio_url.split('/').map(encodeURIComponent).join('/') : '';
    if (audio.dataset.url !== url) {
      audio.dataset.url = url;
      if (url) audio.src = url; else audio.removeAttribute('src');
    }
  }

  function play() {
    var button = $('play'), audio = $('preview-audio'), scene = state.scene;
    if (state.playTimer !== null) {
      clearInterval(state.playTimer);
      state.playTimer = null;
      button.textContent = 'Play';
      audio.pause();
      return;
    }
    if (!scene || !scene.frames) return;
    if (state.chosen >= scene.frames - 1) chooseFrame(0, 'play');
    var start = performance.now(), from = state.chosen;
    if (audio.dataset.url) {
      audio.currentTime = from / scene.fps + (scene.audio_offset || 0);
      audio.play().catch(function () { /* autoplay refused: the motion plays silent */ });
    }
    button.textContent = 'Pause';
    state.playTimer = setInterval(function () {
      var k = from + Math.floor((performance.now() - start) / 1000 * scene.fps);
      if (k >= scene.frames) { play(); return; }
      chooseFrame(k, 'play');
    }, 1000 / Math.min(60, scene.fps));
  }

  // ---- the render ---------------------------------------------------------------------------------------

  function fileURL(root, path, mtime) {
    return '/files/' + root + '/' + path.split('/').map(encodeURIComponent).join('/') + '?t=' + (mtime || 0);
  }

  function clock(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return '';
    var s = Math.round(seconds), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    return (h ? h + ':' + String(m).padStart(2, '0') : String(m)) + ':' + String(s % 60).padStart(2, '0');
  }

  function showOutput(out) {
    state.output = out;
    $('render-folder').textContent = out.folder;
    var p = out.progress;
    $('render-status').textContent = out.status;
    $('render-progress').value = p.todo ? p.done / p.todo : 0;
    var text = p.done + ' / ' + p.todo + ' frames';
    if (p.rate) text += ' · ' + p.rate.toFixed(2) + ' frames/s';
    if (p.eta_s !== null && p.eta_s !== undefined) text += ' · ETA ' + clock(p.eta_s);
    if (out.resumed_at) text += ' · resumed at frame ' + out.resumed_at;
    $('render-progress-text').textContent = text;
    $('render-kept').hidden = !out.kept;
    $('render-kept').textContent = out.kept || '';
    showNewest(out);
    showVideo(out);
    showRunner(out.runner);
  }

  function showNewest(out) {
    var img = $('render-newest'), strip = $('render-strip');
    if (!out.newest) {
      img.hidden = true;
      img.removeAttribute('data-index');
      $('render-newest-caption').textContent = 'no frame yet';
      strip.textContent = '';
      strip.dataset.signature = '';
      return;
    }
    var url = fileURL('out', out.newest.file, out.newest.mtime);
    if (img.dataset.url !== url) {
      img.dataset.url = url;
      img.src = url;
      img.dataset.index = String(out.newest.index);
    }
    img.hidden = false;
    $('render-newest-caption').textContent = 'frame ' + out.newest.index + ' (the newest) · ' + out.frames_on_disk + ' on disk';
    var signature = JSON.stringify(out.strip);
    if (strip.dataset.signature === signature) return; // unchanged: keep the thumbnails (no reload, no flicker)
    strip.dataset.signature = signature;
    strip.textContent = '';
    out.strip.slice().reverse().forEach(function (f) {
      var fig = el('figure', { 'data-index': f.index });
      fig.appendChild(el('img', { src: fileURL('out', f.file, f.mtime), alt: 'frame ' + f.index, loading: 'lazy' }));
      fig.appendChild(el('figcaption', {}, String(f.index)));
      fig.addEventListener('click', function () { chooseFrame(f.index, 'strip'); });
      strip.appendChild(fig);
    });
  }

  function showVideo(out) {
    var video = $('render-video');
    if (!out.video) { video.hidden = true; return; }
    var url = fileURL('out', out.video.file, out.video.mtime);
    if (video.dataset.url !== url) { video.dataset.url = url; video.src = url; }
    video.hidden = false;
  }

  function showRunner(runner) {
    if (!runner) return;
    var busy = runner.running || (state.output && state.output.progress.running);
    $('render-start').disabled = !!busy;
    $('render-stop').disabled = !runner.running || runner.stopping;
    $('render-log').textContent = runner.log.join('\n');
    var out = state.output, later = !out || !out.started || runner.started >= out.started - 1;
    if (runner.returncode !== null && runner.returncode !== 0 && !runner.running && later) {
      if (runner.returncode === 130 || runner.returncode === -2) {
        $('render-status').textContent = 'stopped: the next render continues from its checkpoint';
      } else {
        $('render-status').textContent = 'dfm render exited with ' + runner.returncode + ' (see the render log)';
        document.querySelector('#render details').open = true;
      }
    }
  }

  function post(url) {
    return fetch(url, { method: 'POST', headers: { 'X-Dfm-Studio': '1' } }).then(function (r) {
      return r.json().then(function (data) {
        if (!r.ok) throw new Error(data.error || ('HTTP ' + r.status));
        return data;
      });
    });
  }

  function startRender() {
    $('render-start').disabled = true;
    post('/api/render').then(function (runner) { showRunner(runner); document.querySelector('#render details').open = true; })
      .catch(function (err) { $('render-status').textContent = err.message; $('render-start').disabled = false; });
  }

  function stopRender() {
    post('/api/render/stop').then(showRunner).catch(function (err) { $('render-status').textContent = err.message; });
  }

  // ---- the sweep grid -----------------------------------------------------------------------------------

  function loadSweep() {
    return getJSON('/api/sweep').then(buildSweep).catch(function (err) { setStatus('sweep: ' + err.message); });
  }

  function combos(axesList) {
    return axesList.reduce(function (acc, axis) {
      var out = [];
      acc.forEach(function (c) { axis.values.forEach(function (v) { var n = Object.assign({}, c); n[axis.name] = v; out.push(n); }); });
      return out;
    }, [{}]);
  }

  function matches(cell, want) {
    return Object.keys(want).every(function (k) { return cell.values[k] === want[k]; });
  }

  function sweepCell(grid, want) {
    var td = el('td', { class: 'sweep-cell' });
    var cell = grid.cells.filter(function (c) { return matches(c, want); })[0];
    var label = Object.keys(want).map(function (k) { return k + '=' + want[k]; }).join(', ');
    if (!cell) { td.appendChild(el('div', { class: 'empty' }, 'no variant ' + label)); return td; }
    td.dataset.key = cell.key;
    var fig = el('figure');
    fig.appendChild(el('img', { alt: label, hidden: '' }));
    fig.appendChild(el('div', { class: 'empty' }, ''));
    fig.appendChild(el('figcaption', {}, label + (cell.status ? ' · ' + cell.status : '')));
    fig.addEventListener('click', function () { openVideo(cell, label); });
    td.appendChild(fig);
    state.sweepCells.push({ td: td, cell: cell, frames: new Set(cell.frames), label: label });
    return td;
  }

  function sweepTable(grid, x, y, z) {
    var table = el('table', { class: 'sweep-grid' });
    var zText = Object.keys(z).map(function (k) { return k + '=' + z[k]; }).join(', ');
    if (zText) table.appendChild(el('caption', {}, zText));
    var head = el('tr');
    head.appendChild(el('th', {}, y ? y.name + ' \\ ' + x.name : x.name));
    x.values.forEach(function (v) { head.appendChild(el('th', { scope: 'col' }, v)); });
    table.appendChild(head);
    (y ? y.values : [null]).forEach(function (yv) {
      var tr = el('tr');
      tr.appendChild(el('th', { scope: 'row' }, y ? yv : ''));
      x.values.forEach(function (xv) {
        var want = Object.assign({}, z);
        want[x.name] = xv;
        if (y) want[y.name] = yv;
        tr.appendChild(sweepCell(grid, want));
      });
      table.appendChild(tr);
    });
    return table;
  }

  function buildSweep(grid) {
    state.sweep = grid;
    state.sweepCells = [];
    var box = $('sweep-grids');
    box.textContent = '';
    $('sweep').hidden = !grid;
    $('sweep-link').hidden = !grid;
    if (!grid) return;
    var x = grid.axes[0], y = grid.axes[1] || null;
    $('sweep-info').textContent = grid.cells.length + ' variants in ' + grid.root + ' · X: ' + x.name +
      (y ? ' · Y: ' + y.name : '') + (grid.axes.length > 2 ? ' · one grid per ' +
      grid.axes.slice(2).map(function (a) { return a.name; }).join(', ') : '');
    combos(grid.axes.slice(2)).forEach(function (z) { box.appendChild(sweepTable(grid, x, y, z)); });
    showSweepFrame(state.chosen);
  }

  function showSweepFrame(k) {
    state.sweepCells.forEach(function (c) {
      var img = c.td.querySelector('img'), empty = c.td.querySelector('.empty');
      if (c.frames.has(k)) {
        var url = fileURL('sweep', c.cell.frame_prefix + pad5(k) + '.png', 0);
        if (img.getAttribute('src') !== url) img.src = url;
        img.hidden = false;
        empty.hidden = true;
        c.td.dataset.frame = String(k);
      } else {
        img.hidden = true;
        empty.hidden = false;
        empty.textContent = 'no frame ' + k;
        c.td.dataset.frame = '';
      }
    });
  }

  function openVideo(cell, label) {
    if (!cell.video) return;
    var dialog = $('video-dialog'), video = dialog.querySelector('video');
    $('video-dialog-title').textContent = label;
    video.src = fileURL('sweep', cell.video, Date.now());
    dialog.showModal();
    video.play().catch(function () { /* the user presses play */ });
  }

  // ---- events -------------------------------------------------------------------------------------------

  function setStatus(text) { $('connection').textContent = text; }

  function connect() {
    var es = new EventSource('/api/events');
    es.addEventListener('hello', function () {
      $('connection').className = 'connection live';
      setStatus('live');
      loadScene().then(function () {
        getJSON('/api/preview').then(setPreview);
        getJSON('/api/output').then(showOutput);
        loadSweep();
      });
    });
    es.addEventListener('scene', function () { loadScene(); });
    es.addEventListener('preview', function (e) { setPreview(JSON.parse(e.data)); });
    es.addEventListener('output', function (e) { showOutput(JSON.parse(e.data)); });
    es.addEventListener('render', function (e) { showRunner(JSON.parse(e.data)); });
    es.addEventListener('sweep', function () { loadSweep(); });
    es.onerror = function () {
      $('connection').className = 'connection lost';
      setStatus('reconnecting…');
    };
  }

  document.addEventListener('DOMContentLoaded', function () {
    $('frame-slider').addEventListener('input', function (e) { chooseFrame(+e.target.value, 'slider'); });
    $('play').addEventListener('click', play);
    $('render-start').addEventListener('click', startRender);
    $('render-stop').addEventListener('click', stopRender);
    $('video-dialog').addEventListener('close', function () { $('video-dialog').querySelector('video').pause(); });
    connect();
  });
})();
