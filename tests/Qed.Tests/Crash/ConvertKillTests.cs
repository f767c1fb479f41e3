using System.Diagnostics;
using System.Globalization;
using Qed.Image;
using Qed.Tests.Infrastructure;
using Qed.Tests.Interop;

namespace Qed.Tests.Crash;

/// <summary>
/// Kills the real <c>qed convert -p</c> with SIGKILL at random moments of the copy (at a random progress percentage, or
/// at a random time within a complete run's duration) and checks what the convert promises: the source (an image and its
/// backing file) never changes, and the destination's name shows either what was there before (nothing, or an old file
/// byte for byte) or the complete conversion (identical to the source for qemu-img compare, clean for qemu-img check),
/// never a partial output. Only the hidden <c>.NAME.qed-convert-XXXXXX</c> file can be left behind.
/// </summary>
[Collection(KillCollection.Name)]
public class ConvertKillTests
{
    /// <summary>Kills that must land during the copy (progress shown between 0 and 100%).</summary>
    private const int WantedDuringCopy = 8;

    /// <summary>Runs allowed to get them: some kills are meant for the flush and rename after the copy, and qed can finish first.</summary>
    private const int MaxRuns = 24;
    private const int KilledExitCode = 128 + 9;
    private const long SourceSize = 96L << 20;
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    [Theory]
    [InlineData("qed")]
    [InlineData("raw")]
    public void Kills_during_convert_keep_the_source_and_never_leave_a_partial_output(string format)
    {
        string name = $"ConvertKillTests convert -O {format}";
        int seed = TestSeed.For(name);
        var random = new Random(seed);
        using var dir = new TempDirectory();
        string source = BuildSource(dir, random);
        string[] sourceFiles = [source, dir.File("base.raw")];
        string[] sourceDigests = [.. sourceFiles.Select(Tools.Sha256OfFile)];
        string output = dir.File("out.img");
        string[] Arguments() => ["convert", "-p", "-O", format, source, output];

        var clock = Stopwatch.StartNew();
        var complete = QedProcess.Run(dir.Path, s_timeout, Arguments());
        var fullRun = clock.Elapsed;
        Assert.True(complete.ExitCode == 0, $"{name}: the complete run failed: {complete}");
        AssertComplete(name + " complete run", dir.Path, source, output, format);

        int duringCopy = 0, afterCopy = 0, beforeCopy = 0, finished = 0, replaced = 0, kept = 0;
        var percents = new List<double>();
        int runs = 0;
        for (int run = 0; duringCopy < WantedDuringCopy && run < MaxRuns; run++)
        {
            runs++;
            string context = $"{name} seed {seed} run {run}";
            // Half the runs convert over an existing file, which must survive any kill before the rename.
            string? old = null;
            File.Delete(output);
            if (random.Next(2) == 0)
            {
                byte[] bytes = new byte[random.Next(1, 3 << 20)];
                random.NextBytes(bytes);
                File.WriteAllBytes(output, bytes);
                old = Tools.Sha256OfFile(output);
            }
            // Mostly at a random point of the copy; some as soon as the copy reached 100% (the flush, close and rename follow); some at a random time.
            int roll = random.Next(6);
            bool byTime = roll == 0;
            double percent = roll == 1 ? 100 : random.NextDouble() * 100;
            var delay = fullRun * random.NextDouble();

            var (killed, seen) = RunAndKill(dir.Path, Arguments(), byTime, percent, delay, context);

            for (int i = 0; i < sourceFiles.Length; i++)
            {
                Assert.True(Tools.Sha256OfFile(sourceFiles[i]) == sourceDigests[i], $"{context}: the source file {sourceFiles[i]} changed");
            }
            string[] hidden = Directory.GetFiles(dir.Path, ".out.img.qed-convert-*");
            Assert.True(hidden.Length <= 1, $"{context}: more than one hidden file: {string.Join(", ", hidden)}");
            bool isOld = old is null ? !File.Exists(output) : File.Exists(output) && Tools.Sha256OfFile(output) == old;
            if (!killed)
            {
                finished++;
                Assert.Empty(hidden);
                AssertComplete(context, dir.Path, source, output, format);
            }
            else
            {
                if (isOld)
                {
                    kept++;
                }
                else
                {
                    // Not the old file: then only the complete conversion, renamed into place just before the kill.
                    AssertComplete(context, dir.Path, source, output, format);
                    replaced++;
                }
                if (seen is > 0 and < 100)
                {
                    // Killed while copying: the copy was going to the hidden file, and the destination was never touched.
                    Assert.True(isOld, $"{context}: killed at {seen:F2}% of the copy, yet the destination changed");
                    Assert.True(hidden.Length == 1, $"{context}: killed at {seen:F2}% of the copy, yet there is no hidden file");
                    duringCopy++;
                    percents.Add(seen);
                }
                else if (seen >= 100)
                {
                    afterCopy++;
                }
                else
                {
                    beforeCopy++;
                }
            }
            foreach (string file in hidden)
            {
                File.Delete(file);
            }
        }

        TestSeed.Report($"{name}: {runs} runs: {duringCopy} killed during the copy (at {string.Join(", ", percents.Order().Select(p => p.ToString("F0", CultureInfo.InvariantCulture) + "%"))}), " +
            $"{afterCopy} after it (flush, rename), {beforeCopy} before it; {kept} kills left the old destination, {replaced} the complete output; {finished} finished first; a complete run takes {fullRun.TotalMilliseconds:F0} ms");
        Assert.True(duringCopy >= WantedDuringCopy, $"{name}: only {duringCopy} of {runs} kills landed during the copy");
    }

    /// <summary>A QED image over a raw backing file, with data in both, zero clusters and unallocated ranges.</summary>
    private static string BuildSource(TempDirectory dir, Random random)
    {
        byte[] chunk = new byte[1 << 20];
        using (var backing = File.Create(dir.File("base.raw")))
        {
            // Half the disk long and not cluster aligned; every other MiB holds data, the rest stays a hole.
            backing.SetLength(SourceSize / 2 + 4096);
            for (long offset = 0; offset < SourceSize / 2; offset += 2 << 20)
            {
                random.NextBytes(chunk);
                backing.Position = offset;
                backing.Write(chunk);
            }
        }
        string source = dir.File("src.qed");
        QedImage.Create(source, new QedCreateOptions { Size = SourceSize, ClusterSize = 65536, TableSize = 4, BackingFile = "base.raw", BackingFormat = "raw" });
        using var image = QedImage.Open(source);
        for (int i = 0; i < 48; i++)
        {
            long offset = random.NextInt64(SourceSize - chunk.Length) & ~511L;
            int length = random.Next(1, chunk.Length) & ~511;
            if (i % 6 == 0)
            {
                image.WriteZeroes(offset, Math.Max(length, 512));
                continue;
            }
            random.NextBytes(chunk.AsSpan(0, length));
            image.Write(chunk.AsMemory(0, length), offset);
        }
        return source;
    }

    /// <summary>Starts qed, kills it once its progress reached <paramref name="percent"/> (or after <paramref name="delay"/>); returns whether the kill ended it and the last progress it printed (-1: none).</summary>
    private static (bool Killed, double Seen) RunAndKill(string directory, string[] arguments, bool byTime, double percent, TimeSpan delay, string context)
    {
        using var process = Process.Start(QedProcess.StartInfo(directory, arguments))!;
        process.StandardInput.Close();
        var stderr = process.StandardError.ReadToEndAsync();
        var progress = new ProgressWatcher(process.StandardOutput);
        var clock = Stopwatch.StartNew();
        while (!process.HasExited && (byTime ? clock.Elapsed < delay : progress.Percent < percent))
        {
            if (clock.Elapsed > s_timeout)
            {
                process.Kill();
                process.WaitForExit();
                Assert.Fail($"{context}: qed convert did not finish in {s_timeout}");
            }
            Thread.SpinWait(20);
        }
        process.Kill();
        process.WaitForExit();
        progress.Finish();
        if (process.ExitCode == KilledExitCode)
        {
            return (true, progress.Percent);
        }
        Assert.True(process.ExitCode == 0, $"{context}: qed convert failed by itself: exit {process.ExitCode}: {stderr.Result}");
        return (false, progress.Percent);
    }

    /// <summary>The destination holds the whole conversion: qemu-img compares it equal to the source and, for QED, checks it clean.</summary>
    private static void AssertComplete(string context, string directory, string source, string output, string format)
    {
        var compare = Tools.QemuImgRaw(directory, "compare", "-f", "qed", "-F", format, source, output);
        Assert.True(compare.ExitCode == 0, $"{context}: the destination is not the complete conversion: {compare}");
        if (format == "qed")
        {
            var check = QemuOracle.Check(directory, output);
            Assert.True(check.ExitCode == 0, $"{context}: qemu-img check of the output: {check}");
        }
    }

    /// <summary>Reads qed's <c>-p</c> output as it comes (<c>    (NN.NN/100%)\r</c>) and keeps the last percentage.</summary>
    private sealed class ProgressWatcher
    {
        private readonly Task _reader;
        private double _percent = -1;

        public ProgressWatcher(StreamReader output)
        {
            _reader = Task.Run(() =>
            {
                var text = new System.Text.StringBuilder();
                int c;
                while ((c = output.Read()) >= 0)
                {
                    if (c == '\r' || c == '\n')
                    {
                        string line = text.ToString().Trim();
                        text.Clear();
                        if (line.StartsWith('(') && line.EndsWith("/100%)", StringComparison.Ordinal))
                        {
                            Volatile.Write(ref _percent, double.Parse(line.AsSpan(1, line.Length - 7), CultureInfo.InvariantCulture));
                        }
                        continue;
                    }
                    text.Append((char)c);
                }
            });
        }

        public double Percent => Volatile.Read(ref _percent);

        /// <summary>Waits for the output to end (the process is gone), surfacing a parse failure.</summary>
        public void Finish() => _reader.GetAwaiter().GetResult();
    }
}
