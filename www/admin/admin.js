/*
 * xmppd web admin page (doc/admin.md, "Web admin").
 *
 * Everything goes through the admin HTTP API of the server that serves the
 * page: POST /api/COMMAND with a JSON object, Basic credentials of the
 * signed-in account on every request (doc/admin.md, "Admin HTTP API").
 * The credentials live in this script's memory only: a reload of the page
 * signs out. Data from the server is put into the page with textContent
 * only, never as markup.
 *
 * For tests and the curious, window.xmppdAdmin holds the metric samples
 * (each chart's points are also in its data-samples attribute).
 */
(function () {
	'use strict';

	/* Samples kept per chart (one per poll). */
	const MAX_POINTS = 60;
	const DEFAULT_INTERVAL = 5;

	let creds = null;          /* { jid, auth } while signed in */
	let generation = 0;        /* bumped at sign-out: late answers are dropped */
	let pollTimer = null;
	let intervalSec = DEFAULT_INTERVAL;
	let users = [];            /* the localparts of usersHost */
	let usersHost = '';
	let snapshots = [];        /* raw figures from each metrics poll */

	const $ = (id) => document.getElementById(id);

	/* ---------------------------------------------------------------- */
	/* DOM helpers                                                        */

	/* el('td', {className: 'num', text: '3', data: {user: 'x'}}, [children]) */
	function el(tag, props, children) {
		const e = document.createElement(tag);
		const p = props || {};
		for (const k of Object.keys(p)) {
			const v = p[k];
			if (k === 'text')
				e.textContent = v == null ? '' : String(v);
			else if (k === 'className')
				e.className = v;
			else if (k === 'data')
				for (const d of Object.keys(v))
					e.dataset[d] = v[d];
			else if (k === 'onclick')
				e.addEventListener('click', v);
			else
				e.setAttribute(k, v);
		}
		for (const c of children || [])
			if (c != null)
				e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
		return e;
	}

	function button(text, cls, onclick) {
		return el('button', { type: 'button', className: 'btn btn-small ' + (cls || ''), text, onclick });
	}

	function setText(id, v) {
		$(id).textContent = v == null ? '' : String(v);
	}

	/* The status line of a section: a result (green) or an error (red). */
	function say(id, text, isError) {
		const p = $(id);
		p.textContent = text == null ? '' : String(text).trim();
		p.classList.toggle('error', !!isError);
	}

	function show(id, on) {
		$(id).hidden = !on;
	}

	/* ---------------------------------------------------------------- */
	/* The API                                                            */

	class ApiError extends Error {
		constructor(status, message) {
			super(message);
			this.status = status;
		}
	}

	/* RFC 7617: "Basic " base64(UTF-8 of "jid:password"). */
	function basicAuth(jid, password) {
		const bytes = new TextEncoder().encode(jid + ':' + password);
		let s = '';
		for (const b of bytes)
			s += String.fromCharCode(b);
		return 'Basic ' + btoa(s);
	}

	/*
	 * One command; its "result", or an ApiError with the server's "error".
	 * credentials: 'omit' keeps the browser from answering a 401 with its
	 * own login dialog (its WWW-Authenticate is for scripts like curl); the
	 * Authorization header is ours and is sent anyway.
	 */
	async function api(name, args, auth) {
		let r;
		try {
			r = await fetch('/api/' + encodeURIComponent(name), {
				method: 'POST',
				credentials: 'omit',
				cache: 'no-store',
				headers: { 'Content-Type': 'application/json', 'Authorization': auth },
				body: JSON.stringify(args || {}),
			});
		} catch (e) {
			throw new ApiError(0, 'the server cannot be reached (' + e.message + ')');
		}
		const text = await r.text();
		let body = null;
		try {
			body = JSON.parse(text);
		} catch (e) {
			body = null;
		}
		if (r.ok && body !== null && typeof body === 'object' && 'result' in body)
			return body.result;
		if (body !== null && typeof body === 'object' && typeof body.error === 'string')
			throw new ApiError(r.status, body.error);
		throw new ApiError(r.status, text.trim() || ('HTTP ' + r.status + ' ' + r.statusText));
	}

	/* Never settles: what waits on an answer that came after a sign-out
	 * (and perhaps another sign-in) is dropped, with nothing shown. */
	const dropped = () => new Promise(() => {});

	/* api() as the signed-in account; refused credentials sign out. */
	async function call(name, args) {
		if (creds === null)
			return dropped();
		const gen = generation;
		let res;
		try {
			res = await api(name, args, creds.auth);
		} catch (e) {
			if (gen !== generation)
				return dropped();
			/* The reason goes to the sign-in form, not the section. */
			if (e.status === 401 || e.status === 403) {
				signOut(e.message);
				return dropped();
			}
			throw e;
		}
		return gen === generation ? res : dropped();
	}

	/* Runs a section's loader, its errors into the section's status line. */
	async function guarded(statusId, fn) {
		try {
			await fn();
		} catch (e) {
			say(statusId, e.message, true);
		}
	}

	/* ---------------------------------------------------------------- */
	/* Signing in and out                                                 */

	function domainOf(jid) {
		const at = jid.indexOf('@');
		let d = at >= 0 ? jid.slice(at + 1) : jid;
		const slash = d.indexOf('/');
		if (slash >= 0)
			d = d.slice(0, slash);
		return d;
	}

	async function signIn(ev) {
		ev.preventDefault();
		const jid = $('signin-jid').value.trim();
		const password = $('signin-password').value;
		const auth = basicAuth(jid, password);

		show('signin-error', false);
		$('signin-submit').disabled = true;
		try {
			/* The API checks the password and the access rule on
			 * every request; status is the cheapest to ask. */
			const st = await api('status', {}, auth);
			creds = { jid, auth };
			$('signin-password').value = '';
			enter(st);
		} catch (e) {
			const err = $('signin-error');
			err.textContent = e.status ? e.message + ' (HTTP ' + e.status + ')' : e.message;
			err.hidden = false;
		} finally {
			$('signin-submit').disabled = false;
		}
	}

	function enter(status) {
		generation++;
		setText('signed-in-as', creds.jid);
		$('users-host').value = domainOf(creds.jid);
		show('signin-view', false);
		show('app', true);
		show('nav', true);
		show('who', true);
		renderOverview(status);
		guarded('users-status', loadUsers);
		guarded('sessions-status', loadSessions);
		guarded('s2s-status', loadS2s);
		guarded('modules-status', loadModules);
		snapshots = [];
		drawCharts();
		schedulePoll(0);
	}

	/* Back to the form, with why (a refused request) if there is a reason;
	 * nothing the account could see stays in the page. */
	function signOut(reason) {
		generation++;
		creds = null;
		clearTimeout(pollTimer);
		pollTimer = null;
		users = [];
		snapshots = [];
		for (const id of ['users-rows', 'sessions-rows', 's2s-rows', 'modules-rows'])
			$(id).replaceChildren();
		for (const id of ['ov-version', 'ov-uptime', 'ov-sessions', 'ov-connections', 'ov-s2s',
		    'ov-workers', 'ov-build', 'signed-in-as'])
			setText(id, '');
		for (const id of ['overview-status', 'metrics-status', 'users-status', 'sessions-status',
		    's2s-status', 'modules-status'])
			say(id, '');
		for (const id of ['users-empty', 'sessions-empty', 's2s-empty', 'modules-empty'])
			show(id, false);
		$('users-search').value = '';
		drawCharts();
		show('app', false);
		show('nav', false);
		show('who', false);
		show('signin-view', true);
		const err = $('signin-error');
		err.textContent = reason ? 'Signed out: ' + reason : '';
		err.hidden = !reason;
		$('signin-password').focus();
	}

	/* ---------------------------------------------------------------- */
	/* Overview                                                           */

	function formatUptime(s) {
		if (typeof s !== 'number' || !isFinite(s))
			return '';
		const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600);
		const m = Math.floor(s % 3600 / 60), sec = Math.floor(s % 60);
		if (d > 0)
			return d + ' d ' + h + ' h';
		if (h > 0)
			return h + ' h ' + m + ' min';
		if (m > 0)
			return m + ' min ' + sec + ' s';
		return sec + ' s';
	}

	function renderOverview(st) {
		st = st || {};
		setText('ov-version', st.version);
		setText('ov-uptime', formatUptime(st.uptime));
		$('ov-uptime').title = typeof st.uptime === 'number' ? st.uptime + ' s' : '';
		setText('ov-sessions', st.sessions);
		setText('ov-connections', st.connections);
		setText('ov-s2s', st.s2s_connections);
		setText('ov-workers', st.workers);
		setText('ov-build', st.build);
	}

	async function loadOverview() {
		renderOverview(await call('status'));
		say('overview-status', '');
	}

	/* ---------------------------------------------------------------- */
	/* Users                                                              */

	async function loadUsers() {
		const host = $('users-host').value.trim();
		const list = await call('users', { host });
		users = Array.isArray(list) ? list.slice() : [];
		usersHost = host;
		renderUsers();
	}

	function renderUsers() {
		const q = $('users-search').value.trim().toLowerCase();
		const shown = users.filter((u) => u.toLowerCase().includes(q));
		const rows = shown.map((u) => userRow(u));
		$('users-rows').replaceChildren(...rows);
		const empty = $('users-empty');
		if (users.length === 0)
			empty.textContent = 'No accounts on ' + usersHost + '.';
		else if (shown.length === 0)
			empty.textContent = 'No account matches "' + q + '".';
		empty.hidden = shown.length > 0;
	}

	function userRow(u) {
		const host = usersHost;
		const actions = el('td', { className: 'actions' });
		const row = el('tr', { data: { user: u } }, [
			el('td', {}, [el('span', { className: 'user', text: u }),
			    el('span', { className: 'muted', text: '@' + host })]),
			actions,
		]);

		function normal() {
			actions.replaceChildren(
			    button('Password', 'user-passwd', askPassword),
			    button('Delete', 'btn-danger user-delete', askDelete));
		}
		function askPassword() {
			const input = el('input', { type: 'password', className: 'passwd-input',
			    placeholder: 'new password', 'aria-label': 'New password for ' + u,
			    autocomplete: 'new-password' });
			const set = button('Set', 'btn-primary passwd-set', async () => {
				set.disabled = true;
				try {
					say('users-status', await call('passwd',
					    { user: u, host, password: input.value }));
					normal();
				} catch (e) {
					say('users-status', e.message, true);
					set.disabled = false;
				}
			});
			input.addEventListener('keydown', (ev) => {
				if (ev.key === 'Enter')
					set.click();
				else if (ev.key === 'Escape')
					normal();
			});
			actions.replaceChildren(input, set, button('Cancel', 'passwd-cancel', normal));
			input.focus();
		}
		function askDelete() {
			const yes = button('Delete', 'btn-danger-solid delete-confirm', async () => {
				yes.disabled = true;
				try {
					say('users-status', await call('unregister', { user: u, host }));
				} catch (e) {
					say('users-status', e.message, true);
				}
				await guarded('users-status', loadUsers);
			});
			actions.replaceChildren(el('span', { className: 'confirm-text',
			    text: 'Delete ' + u + '@' + host + '?' }), yes,
			    button('Cancel', 'delete-cancel', normal));
		}
		normal();
		return row;
	}

	async function createUser(ev) {
		ev.preventDefault();
		const user = $('create-user').value.trim();
		const password = $('create-password').value;
		const host = $('users-host').value.trim();
		try {
			say('users-status', await call('register', { user, host, password }));
			$('create-user').value = '';
			$('create-password').value = '';
		} catch (e) {
			say('users-status', e.message, true);
			return;
		}
		await guarded('users-status', loadUsers);
	}

	/* ---------------------------------------------------------------- */
	/* Sessions                                                           */

	async function loadSessions() {
		const list = await call('connected');
		const sessions = (Array.isArray(list) ? list : []).slice()
		    .sort((a, b) => String(a.jid).localeCompare(String(b.jid)));
		$('sessions-rows').replaceChildren(...sessions.map((s) => el('tr', { data: { jid: s.jid } }, [
			el('td', { className: 'jid', text: s.jid }),
			el('td', { className: 'mono nowrap', text: s.address }),
			el('td', { className: 'num', text: s.priority }),
			el('td', {}, [el('span', { className: s.available ? 'pill pill-yes' : 'pill',
			    text: s.available ? 'yes' : 'no' })]),
			el('td', { className: 'actions' }, [button('Kick', 'btn-danger session-kick',
			    (ev) => kick(s.jid, ev.currentTarget))]),
		])));
		show('sessions-empty', sessions.length === 0);
	}

	async function kick(jid, btn) {
		btn.disabled = true;
		try {
			say('sessions-status', await call('kick', { jid }));
		} catch (e) {
			say('sessions-status', e.message, true);
			btn.disabled = false;
			return;
		}
		/* The stream closes on its worker a moment after the answer. */
		await guarded('sessions-status', loadSessions);
		setTimeout(() => guarded('sessions-status', loadSessions), 1000);
	}

	/* ---------------------------------------------------------------- */
	/* S2S links                                                          */

	async function loadS2s() {
		const list = await call('s2s');
		const links = Array.isArray(list) ? list : [];
		const cell = (v, cls) => el('td', { className: cls || '', text: v == null ? '\u2013' : v });
		$('s2s-rows').replaceChildren(...links.map((l) => {
			const tr = el('tr', { data: { remote: l.remote == null ? '' : l.remote } }, [
				cell(l.direction), cell(l.local), cell(l.remote), cell(l.auth), cell(l.tls),
				cell(l.state), cell(l.stanzas_in, 'num'), cell(l.stanzas_out, 'num'),
			]);
			if (l.address)
				tr.title = l.address;
			return tr;
		}));
		show('s2s-empty', links.length === 0);
	}

	/* ---------------------------------------------------------------- */
	/* Modules                                                            */

	async function loadModules() {
		const list = await call('module_list');
		const mods = Array.isArray(list) ? list : [];
		$('modules-rows').replaceChildren(...mods.map((m) => el('tr', { data: { module: m.name } }, [
			el('td', { className: 'nowrap', text: m.name }),
			el('td', { className: 'nowrap', text: m.version }),
			el('td', { className: 'mono muted', text: m.path }),
			el('td', { className: 'actions' }, [button('Reload', 'module-reload',
			    (ev) => reloadModule(m.name, ev.currentTarget))]),
		])));
		show('modules-empty', mods.length === 0);
	}

	async function reloadModule(name, btn) {
		btn.disabled = true;
		try {
			say('modules-status', await call('module_reload', { name }));
		} catch (e) {
			say('modules-status', e.message, true);
		}
		btn.disabled = false;
		await guarded('modules-status', loadModules);
	}

	/* ---------------------------------------------------------------- */
	/* Metrics                                                            */

	/* Prometheus text format 0.0.4: "name{label="v",...} value [ts]". */
	function parseMetrics(text) {
		const out = [];
		const lineRe = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+-?\d+)?$/;
		const labelRe = /([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
		for (const raw of text.split('\n')) {
			const line = raw.trim();
			if (line === '' || line[0] === '#')
				continue;
			const m = lineRe.exec(line);
			if (m === null)
				continue;
			const labels = {};
			for (const l of (m[2] || '').matchAll(labelRe))
				labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
			let v = m[3];
			v = v === '+Inf' || v === 'Inf' ? Infinity : v === '-Inf' ? -Infinity : Number(v);
			out.push({ name: m[1], labels, value: v });
		}
		return out;
	}

	/* The figures the charts draw, from one scrape. */
	function snapshot(series) {
		const sum = (name) => series.filter((s) => s.name === name)
		    .reduce((a, s) => a + s.value, 0);
		const one = (name) => {
			const s = series.find((x) => x.name === name);
			return s ? s.value : null;
		};
		const transports = {};
		for (const s of series)
			if (s.name === 'xmppd_sessions')
				transports[s.labels.transport || ''] = s.value;
		return {
			t: Date.now(),
			sessions: sum('xmppd_sessions'),
			transports,
			stanzasIn: sum('xmppd_stanzas_in_total'),
			stanzasOut: sum('xmppd_stanzas_out_total'),
			rss: one('process_resident_memory_bytes'),
			cpu: one('process_cpu_seconds_total'),
		};
	}

	/* A counter's increase per second between two scrapes; a counter that
	 * went down started again (a restart) from zero. */
	function rate(prev, cur, key) {
		const dt = (cur.t - prev.t) / 1000;
		if (dt <= 0 || prev[key] == null || cur[key] == null)
			return null;
		const d = cur[key] - prev[key];
		return (d < 0 ? cur[key] : d) / dt;
	}

	const round = (v, n) => (v == null ? null : Number(v.toFixed(n)));

	/* Each chart: its series (key, label), and its points from the snapshots. */
	const charts = {
		sessions: {
			id: 'chart-sessions',
			series: [['total', 'total'], ['tcp', 'tcp'], ['websocket', 'websocket'], ['bosh', 'bosh']],
			format: (v) => String(Math.round(v)),
			points: () => snapshots.map((s) => ({ t: s.t, total: s.sessions,
			    tcp: s.transports.tcp || 0, websocket: s.transports.websocket || 0,
			    bosh: s.transports.bosh || 0 })),
		},
		stanzas: {
			id: 'chart-stanzas',
			series: [['in', 'in'], ['out', 'out']],
			format: (v) => (v < 10 ? v.toFixed(1) : String(Math.round(v))) + '/s',
			points: () => snapshots.slice(1).map((s, i) => ({ t: s.t,
			    in: round(rate(snapshots[i], s, 'stanzasIn'), 3),
			    out: round(rate(snapshots[i], s, 'stanzasOut'), 3) })),
		},
		rss: {
			id: 'chart-rss',
			series: [['rss', 'RSS']],
			format: (v) => v.toFixed(1) + ' MiB',
			points: () => snapshots.filter((s) => s.rss != null)
			    .map((s) => ({ t: s.t, rss: round(s.rss / 1048576, 2) })),
		},
		cpu: {
			id: 'chart-cpu',
			series: [['cpu', 'CPU']],
			format: (v) => v.toFixed(1) + ' %',
			points: () => snapshots.slice(1).map((s, i) => {
				const r = rate(snapshots[i], s, 'cpu');
				return { t: s.t, cpu: r == null ? null : round(r * 100, 2) };
			}).filter((p) => p.cpu != null),
		},
	};

	function cssVar(name, fallback) {
		const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
		return v || fallback;
	}

	/* A round upper bound for the y axis: 1, 2, 5 times a power of ten. */
	function niceMax(v) {
		if (!(v > 0))
			return 1;
		const p = Math.pow(10, Math.floor(Math.log10(v)));
		for (const f of [1, 2, 5, 10])
			if (v <= f * p)
				return f * p;
		return 10 * p;
	}

	function drawChart(name) {
		const c = charts[name];
		const fig = $(c.id);
		const points = c.points().slice(-MAX_POINTS);
		fig.dataset.samples = JSON.stringify(points);
		fig.dataset.count = String(points.length);

		/* The legend: each series' last value. */
		const last = points.length ? points[points.length - 1] : null;
		fig.querySelector('.legend').replaceChildren(...c.series.map(([key, label], i) =>
		    el('li', {}, [
			el('span', { className: 'swatch swatch-' + (i + 1) }),
			label,
			el('span', { className: 'value', id: 'metric-' + name + '-' + key,
			    text: last && last[key] != null ? c.format(last[key]) : '\u2013' }),
		    ])));

		const canvas = fig.querySelector('canvas');
		const dpr = window.devicePixelRatio || 1;
		const w = canvas.clientWidth || 300, h = canvas.clientHeight || 110;
		if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
			canvas.width = Math.round(w * dpr);
			canvas.height = Math.round(h * dpr);
		}
		const ctx = canvas.getContext('2d');
		ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
		ctx.clearRect(0, 0, w, h);

		let max = 0;
		for (const p of points)
			for (const [key] of c.series)
				if (p[key] != null && isFinite(p[key]))
					max = Math.max(max, p[key]);
		const top = niceMax(max * 1.1);
		const left = 34, right = w - 4, y0 = h - 14, y1 = 6;
		const yOf = (v) => y0 - (v / top) * (y0 - y1);

		/* Grid and y labels: 0, half, top. */
		ctx.font = '10px system-ui, sans-serif';
		ctx.textAlign = 'right';
		ctx.textBaseline = 'middle';
		ctx.lineWidth = 1;
		for (const v of [0, top / 2, top]) {
			const y = Math.round(yOf(v)) + 0.5;
			ctx.strokeStyle = cssVar('--grid', '#e9edf3');
			ctx.beginPath();
			ctx.moveTo(left, y);
			ctx.lineTo(right, y);
			ctx.stroke();
			ctx.fillStyle = cssVar('--muted', '#6b7585');
			ctx.fillText(Number(v.toPrecision(3)).toString(), left - 4, y);
		}
		/* The x axis spans the samples there are, at least ten polls,
		 * at most the samples kept. */
		const tEnd = last ? last.t : Date.now();
		const poll = intervalSec * 1000;
		const covered = points.length > 1 ? tEnd - points[0].t : 0;
		const span = Math.min(poll * (MAX_POINTS - 1), Math.max(covered, poll * 10));
		const xOf = (t) => right - ((tEnd - t) / span) * (right - left);
		ctx.textAlign = 'left';
		ctx.textBaseline = 'alphabetic';
		ctx.fillText('-' + Math.round(span / 1000) + ' s', left, h - 2);
		ctx.textAlign = 'right';
		ctx.fillText('now', right, h - 2);

		/* The first series (a total) last, on top of the others. */
		c.series.map((s, i) => [s, i]).reverse().forEach(([[key], i]) => {
			const color = cssVar('--series-' + (i + 1), '#2f6fdb');
			const pts = points.filter((p) => p[key] != null && isFinite(p[key]));
			ctx.strokeStyle = color;
			ctx.fillStyle = color;
			ctx.lineWidth = i === 0 ? 2 : 1.5;
			if (pts.length === 1) {
				ctx.beginPath();
				ctx.arc(xOf(pts[0].t), yOf(pts[0][key]), 2.5, 0, 2 * Math.PI);
				ctx.fill();
				return;
			}
			ctx.beginPath();
			pts.forEach((p, j) => {
				const x = Math.max(left, xOf(p.t)), y = yOf(p[key]);
				if (j === 0)
					ctx.moveTo(x, y);
				else
					ctx.lineTo(x, y);
			});
			ctx.stroke();
		});
	}

	function drawCharts() {
		for (const name of Object.keys(charts))
			drawChart(name);
		window.xmppdAdmin.snapshots = snapshots.slice();
	}

	function schedulePoll(ms) {
		clearTimeout(pollTimer);
		pollTimer = setTimeout(poll, ms);
	}

	/* One poll: the metrics and the overview; the next one is scheduled
	 * when this one is answered, so slow answers never pile up. */
	async function poll() {
		const gen = generation;
		await Promise.all([
			(async () => {
				try {
					const text = await call('metrics');
					if (typeof text !== 'string')
						throw new ApiError(0, 'metrics: unexpected answer');
					snapshots.push(snapshot(parseMetrics(text)));
					if (snapshots.length > MAX_POINTS + 1)
						snapshots.splice(0, snapshots.length - MAX_POINTS - 1);
					drawCharts();
					say('metrics-status', '');
				} catch (e) {
					if (gen === generation)
						say('metrics-status', 'metrics: ' + e.message, true);
				}
			})(),
			guarded('overview-status', loadOverview),
		]);
		if (gen === generation && creds !== null)
			schedulePoll(intervalSec * 1000);
	}

	function setIntervalFrom(v) {
		const n = Number(v);
		if (!isFinite(n) || n <= 0)
			return false;
		intervalSec = Math.min(3600, Math.max(0.5, n));
		$('interval').value = String(intervalSec);
		return true;
	}

	/* ---------------------------------------------------------------- */
	/* Wiring                                                             */

	function init() {
		window.xmppdAdmin = { snapshots: [], charts, parseMetrics,
		    get interval() { return intervalSec; } };
		const q = new URLSearchParams(location.search).get('interval');
		if (q !== null)
			setIntervalFrom(q);

		$('signin-form').addEventListener('submit', signIn);
		$('signout').addEventListener('click', () => signOut());
		$('overview-refresh').addEventListener('click', () => guarded('overview-status', loadOverview));
		$('users-refresh').addEventListener('click', () => guarded('users-status', loadUsers));
		$('users-host-form').addEventListener('submit', (ev) => {
			ev.preventDefault();
			$('users-search').value = '';
			guarded('users-status', loadUsers);
		});
		$('users-search').addEventListener('input', renderUsers);
		$('users-create').addEventListener('submit', createUser);
		$('sessions-refresh').addEventListener('click', () => guarded('sessions-status', loadSessions));
		$('s2s-refresh').addEventListener('click', () => guarded('s2s-status', loadS2s));
		$('modules-refresh').addEventListener('click', () => guarded('modules-status', loadModules));
		$('interval-form').addEventListener('submit', (ev) => {
			ev.preventDefault();
			if (setIntervalFrom($('interval').value) && creds !== null)
				schedulePoll(0);
		});
		window.addEventListener('resize', drawCharts);
		drawCharts();
		$('signin-jid').focus();
	}

	if (document.readyState === 'loading')
		document.addEventListener('DOMContentLoaded', init);
	else
		init();
})();
