using System.Text;
using Qed.Tests.Infrastructure;
using Qed.Tests.Nbd.Interop;

namespace Qed.Tests.Nbd.Hostile;

/// <summary>
/// The hostile prober (issue 9 point 5) against <c>qed serve</c> and, side by side with the same arguments, qemu-nbd.
/// Prints a table of what each server did in each case; asserts only ours: the spec's answers (EINVAL, ENOSPC past the
/// end, drops where the stream cannot be parsed), a normal client served correctly after every case, the process
/// alive throughout, a clean exit on SIGTERM and a clean <c>qemu-img check</c> afterwards.
/// </summary>
public sealed class HostileProberTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Hostile_clients_do_not_hurt_the_server_or_its_other_clients()
    {
        using var dir = new TempDirectory();
        var targets = new Dictionary<NbdServerKind, (HostileTarget Target, string Image)>();
        var servers = new List<NbdServerProcess>();
        try
        {
            foreach (var kind in new[] { NbdServerKind.Qed, NbdServerKind.QemuNbd })
            {
                string name = NbdServerProcess.KindName(kind);
                string image = InteropImages.EmptyQed(dir.File(name), "disk.qed");
                Tools.QemuIo(dir.Path, "qed", image, "write -P 0x5c 0 1M");
                var server = NbdServerProcess.Start(kind, dir.Path,
                    "-t", "-e", HostileTarget.MaxClients.ToString(System.Globalization.CultureInfo.InvariantCulture), "-f", "qed", "-x", "disk", "-k", dir.File(name + ".sock"), image);
                servers.Add(server);
                targets[kind] = (new HostileTarget(server, "disk"), image);
            }

            // Both probers at once: the idle case makes each last the handshake deadline anyway.
            var runs = targets.ToDictionary(
                pair => pair.Key,
                pair => Task.Factory.StartNew(() => HostileProber.Run(pair.Value.Target), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default));
            await Task.WhenAll(runs.Values).WaitAsync(TimeSpan.FromSeconds(90));
            var ours = await runs[NbdServerKind.Qed];
            var theirs = await runs[NbdServerKind.QemuNbd];

            string table = Table(ours, theirs);
            output.WriteLine(table);
            TestSeed.Report($"hostile prober: {ours.Count} cases run against each server");

            Assert.Equal(HostileProber.AllCases.Count, ours.Count);
            Assert.Equal(HostileProber.AllCases.Count, theirs.Count);
            var failures = ours.Where(o => !o.Passed).Select(o => $"{o.Case.Name}: got \"{o.Outcome}\", expected {o.Case.Expected}{(o.NormalClientProblem is null ? "" : $"; normal client after it: {o.NormalClientProblem}")}").ToList();
            var qed = targets[NbdServerKind.Qed].Target.Server;
            Assert.False(qed.HasExited, $"qed serve died: {qed.StdErr}");
            Assert.True(failures.Count == 0, $"{failures.Count} case(s) failed against qed serve:\n{string.Join('\n', failures)}\nserver stderr:\n{qed.StdErr}");

            await qed.StopCleanlyAsync();
            InteropImages.AssertChecksClean(targets[NbdServerKind.Qed].Image);
            var qemu = targets[NbdServerKind.QemuNbd].Target.Server;
            if (!qemu.HasExited)
            {
                output.WriteLine($"qemu-nbd exit after SIGTERM: {await qemu.StopAsync()}");
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

    private static string Table(List<HostileOutcome> ours, List<HostileOutcome> theirs)
    {
        static string Cell(HostileOutcome o) =>
            (o.Outcome + (o.NormalClientProblem is null ? "" : $" [AFTER: {o.NormalClientProblem}]")).Replace("|", "/", StringComparison.Ordinal);
        var text = new StringBuilder();
        text.AppendLine("| # | case | qed serve | qemu-nbd 7.2 | expected of qed | qed |");
        text.AppendLine("|---|---|---|---|---|---|");
        for (int i = 0; i < ours.Count; i++)
        {
            var theirOutcome = theirs.FirstOrDefault(o => o.Case == ours[i].Case);
            text.AppendLine($"| {i + 1} | {ours[i].Case.Name} | {Cell(ours[i])} | {(theirOutcome is null ? "-" : Cell(theirOutcome))} | {ours[i].Case.Expected} | {(ours[i].Passed ? "ok" : "FAIL")} |");
        }
        text.AppendLine($"(a normal client READ 64 KiB of the pattern and of the untouched area after every case; [AFTER: ...] marks where it failed)");
        return text.ToString();
    }
}
