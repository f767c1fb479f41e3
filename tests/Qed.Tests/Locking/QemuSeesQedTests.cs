using Qed.Tests.Infrastructure;

namespace Qed.Tests.Locking;

/// <summary>
/// QEMU treats an image that qed holds exactly as it treats one that QEMU holds: the same qemu-io and qemu-img commands
/// run once while <c>qemu-io -c 'sleep'</c> holds the image and once while <c>qed io -c 'sleep'</c> holds it, in the
/// same mode, and must succeed or fail alike, with the same message, changing the image alike. Another qed process
/// must answer alike too. The two holders' lock bytes in /proc/locks must be the same.
/// </summary>
public sealed class QemuSeesQedTests : IDisposable
{
    private const string Image = "img";
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData("qed", "", true)]
    [InlineData("qed", "-r", true)]
    [InlineData("qed", "-r -U", false)]
    [InlineData("raw", "", true)]
    [InlineData("raw", "-r", false)]
    public void Qemu_treats_a_qed_holder_as_it_treats_a_qemu_holder(string format, string mode, bool excludesSomething)
    {
        string[] modeArguments = mode.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        string[] holdArguments = ["-f", format, .. modeArguments, "-c", "sleep 60000", Image];

        MakeImage(format);
        var (qemuLocks, qemuResults) = ProbeWhileHeld(BackgroundProcess.Start(_dir.Path, "qemu-io", holdArguments), format);
        MakeImage(format);
        var (qedLocks, qedResults) = ProbeWhileHeld(BackgroundProcess.Qed(_dir.Path, ["io", .. holdArguments]), format);

        Assert.True(qemuLocks.SequenceEqual(qedLocks), $"lock bytes: qemu-io {mode} {LockTable.Show(qemuLocks)}, qed io {mode} {LockTable.Show(qedLocks)}");
        Assert.Equal(qemuResults.Count, qedResults.Count);
        for (int i = 0; i < qemuResults.Count; i++)
        {
            Assert.True(qemuResults[i] == qedResults[i], $"held by qemu-io: {qemuResults[i]}\nheld by qed:     {qedResults[i]}");
        }
        int refused = qedResults.Count(r => r.StdErr.Contains("Is another process using the image", StringComparison.Ordinal));
        TestSeed.Report($"{format} {mode}: {qedResults.Count} QEMU and qed commands each run against both holders, {refused} refused, holder bytes {LockTable.Show(qedLocks)}");
        // Evidence that the comparison covers refusals: an exclusive mode must make QEMU refuse something.
        Assert.Equal(excludesSomething, refused > 0);
        // The qed holder was killed: the kernel dropped its locks with its open file description.
        Assert.Empty(LockTable.Bytes(_dir.File(Image)));
    }

    private void MakeImage(string format)
    {
        File.Delete(_dir.File(Image));
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", format, Image, "1M");
        Tools.QemuIo(_dir.Path, format, Image, "write -P 0x5a 0 64k");
    }

    /// <summary>Runs every probe while <paramref name="holder"/> keeps the image open, then kills the holder.</summary>
    private (IReadOnlyList<long> Locks, List<ProbeResult> Results) ProbeWhileHeld(BackgroundProcess holder, string format)
    {
        using (holder)
        {
            var locks = LockTable.WaitForHolder(_dir.File(Image), holder);
            var results = new List<ProbeResult>();
            foreach (var probe in Probes(format))
            {
                string before = Tools.Sha256OfFile(_dir.File(Image));
                var result = probe[0] == "qed"
                    ? QedProcess.Run(_dir.Path, TimeSpan.FromSeconds(30), probe[1..])
                    : Tools.Run(probe[0], probe[1..], _dir.Path, TimeSpan.FromSeconds(30));
                bool changed = Tools.Sha256OfFile(_dir.File(Image)) != before;
                File.Delete(_dir.File("out.raw"));
                results.Add(new ProbeResult(string.Join(' ', probe), result.ExitCode, result.StdErr, changed));
            }
            Assert.False(holder.HasExited, $"{holder} ended during the probes:\n{holder.Output}");
            return (locks, results);
        }
    }

    /// <summary>QEMU's users of an image, readers and writers, and another qed; <c>create</c> last, since it may empty the image.</summary>
    private static IEnumerable<string[]> Probes(string format)
    {
        yield return ["qed", "io", "-f", format, "-c", "read 0 512", Image];
        yield return ["qed", "io", "-f", format, "-r", "-c", "read 0 512", Image];
        yield return ["qed", "info", "-f", format, Image];
        yield return ["qemu-io", "-f", format, "-c", "read 0 512", Image];
        yield return ["qemu-io", "-f", format, "-r", "-c", "read 0 512", Image];
        yield return ["qemu-io", "-f", format, "-r", "-U", "-c", "read 0 512", Image];
        yield return ["qemu-img", "info", "-f", format, Image];
        yield return ["qemu-img", "check", "-f", format, Image];
        yield return ["qemu-img", "bench", "-f", format, "-c", "1", Image];
        yield return ["qemu-img", "convert", "-f", format, "-O", "raw", Image, "out.raw"];
        yield return ["qemu-img", "create", "-q", "-f", format, Image, "1M"];
    }

    private sealed record ProbeResult(string Command, int ExitCode, string StdErr, bool ChangedImage)
    {
        public override string ToString() => $"{Command}: exit {ExitCode}, image {(ChangedImage ? "changed" : "unchanged")}, stderr: {StdErr.TrimEnd()}";
    }
}
