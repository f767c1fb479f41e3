using System.Globalization;
using System.Text;
using Qed.Tests.Infrastructure;
using Qed.Tests.Nbd.Interop;

namespace Qed.Tests.Nbd.Hostile;

/// <summary>
/// The hostile prober (issue 9 point 5) against <c>qed serve</c> and, side by side with the same arguments, qemu-nbd.
/// Prints a table of what each server did in each case; asserts only ours: the spec's answers (EPERM read-only,
/// ENOSPC for writes past the end, EINVAL otherwise, drops where the stream cannot be parsed), a normal client served
/// correctly after every case, the process alive throughout, a clean exit on SIGTERM and a clean <c>qemu-img check</c>.
/// </summary>
internal static class HostileProberRun
{
    public static async Task RunAsync(bool tcp, ITestOutputHelper output)
    {
        using var dir = new TempDirectory();
        var targets = new Dictionary<NbdServerKind, (HostileTarget Target, string Image, string ReadOnlyImage)>();
        var servers = new List<NbdServerProcess>();
        string readOnlyDigest = "";
        try
        {
            NbdServerKind[] kinds = tcp ? [NbdServerKind.Qed] : [NbdServerKind.Qed, NbdServerKind.QemuNbd];
            foreach (var kind in kinds)
            {
                string name = NbdServerProcess.KindName(kind);
                string image = InteropImages.EmptyQed(dir.File(name), "disk.qed");
                Tools.QemuIo(dir.Path, "qed", image, "write -P 0x5c 0 1M");
                string readOnlyImage = dir.File(name + "/ro.qed");
                File.Copy(image, readOnlyImage);
                if (kind == NbdServerKind.Qed)
                {
                    readOnlyDigest = Tools.Sha256OfFile(readOnlyImage);
                }
                NbdServerProcess Start(string file, string socketName, params string[] extra)
                {
                    string[] listen = tcp ? ["-b", "127.0.0.1", "-p", NbdServerProcess.FreeTcpPort().ToString(CultureInfo.InvariantCulture)] : ["-k", dir.File(socketName)];
                    var server = NbdServerProcess.Start(kind, dir.Path,
                        ["-t", "-e", HostileTarget.MaxClients.ToString(CultureInfo.InvariantCulture), "-f", "qed", "-x", "disk", .. extra, .. listen, file]);
                    servers.Add(server);
                    return server;
                }
                var readOnly = new HostileTarget(Start(readOnlyImage, name + "-ro.sock", "-r"), "disk");
                targets[kind] = (new HostileTarget(Start(image, name + ".sock"), "disk", readOnly), image, readOnlyImage);
            }

            // Both probers at once: the idle case makes each last the handshake deadline anyway.
            var runs = targets.ToDictionary(
                pair => pair.Key,
                pair => Task.Factory.StartNew(() => HostileProber.Run(pair.Value.Target), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default));
            await Task.WhenAll(runs.Values).WaitAsync(TimeSpan.FromSeconds(90));
            var ours = await runs[NbdServerKind.Qed];
            var theirs = tcp ? [] : await runs[NbdServerKind.QemuNbd];

            output.WriteLine(Table(ours, theirs, tcp ? "TCP 127.0.0.1" : "unix socket"));
            TestSeed.Report($"hostile prober over {(tcp ? "TCP" : "a unix socket")}: {ours.Count} cases run against each server, {ours.Count(o => o.Passed)} as required of qed serve");

            Assert.Equal(HostileProber.AllCases.Count, ours.Count);
            Assert.Equal(tcp ? 0 : HostileProber.AllCases.Count, theirs.Count);
            var failures = ours.Where(o => !o.Passed).Select(o => $"{o.Case.Name}: got \"{o.Outcome}\", expected {o.Case.Expected}{(o.NormalClientProblem is null ? "" : $"; normal client after it: {o.NormalClientProblem}")}").ToList();
            var qed = targets[NbdServerKind.Qed].Target;
            Assert.False(qed.Server.HasExited || qed.ReadOnlyTarget!.Server.HasExited, $"qed serve died: {qed.Server.StdErr}{qed.ReadOnlyTarget!.Server.StdErr}");
            Assert.True(failures.Count == 0, $"{failures.Count} case(s) failed against qed serve:\n{string.Join('\n', failures)}\nserver stderr:\n{qed.Server.StdErr}");

            await qed.Server.StopCleanlyAsync();
            await qed.ReadOnlyTarget.Server.StopCleanlyAsync();
            InteropImages.AssertChecksClean(targets[NbdServerKind.Qed].Image);
            InteropImages.AssertChecksClean(targets[NbdServerKind.Qed].ReadOnlyImage);
            Assert.True(readOnlyDigest == Tools.Sha256OfFile(targets[NbdServerKind.Qed].ReadOnlyImage), "the read-only export's image changed");
            foreach (var server in servers.Where(s => s.Kind == NbdServerKind.QemuNbd && !s.HasExited))
            {
                output.WriteLine($"qemu-nbd exit after SIGTERM: {await server.StopAsync()}");
            }
        }
        finally
        {
            foreach (var server in servers)
            {
                await server.DisposeAsync();
            }
        }
    }

    private static string Table(List<HostileOutcome> ours, List<HostileOutcome> theirs, string transport)
    {
        static string Cell(HostileOutcome o) =>
            (o.Outcome + (o.NormalClientProblem is null ? "" : $" [AFTER: {o.NormalClientProblem}]")).Replace("|", "/", StringComparison.Ordinal);
        var text = new StringBuilder();
        text.AppendLine($"Hostile prober over {transport} (servers started with -t -e {HostileTarget.MaxClients} -f qed -x disk; read-only cases against a second server with -r)");
        text.AppendLine($"| # | case | qed serve | {(theirs.Count == 0 ? "qemu-nbd (not run over TCP)" : "qemu-nbd 7.2")} | expected of qed | qed |");
        text.AppendLine("|---|---|---|---|---|---|");
        for (int i = 0; i < ours.Count; i++)
        {
            var theirOutcome = theirs.FirstOrDefault(o => o.Case == ours[i].Case);
            text.AppendLine($"| {i + 1} | {ours[i].Case.Name} | {Cell(ours[i])} | {(theirOutcome is null ? "-" : Cell(theirOutcome))} | {ours[i].Case.Expected} | {(ours[i].Passed ? "ok" : "FAIL")} |");
        }
        text.AppendLine($"(qed serve: {ours.Sum(o => o.Elapsed.TotalSeconds):F1} s of cases, the idle one alongside the others; qemu-nbd: {(theirs.Count == 0 ? "not run" : $"{theirs.Sum(o => o.Elapsed.TotalSeconds):F1} s")})");
        text.AppendLine("(after every case a normal client READ 64 KiB of the pattern and of the area the refused writes aimed at; [AFTER: ...] marks where it failed)");
        return text.ToString();
    }
}
