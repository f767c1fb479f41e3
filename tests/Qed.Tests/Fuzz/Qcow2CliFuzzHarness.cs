using System.Globalization;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Fuzz;

/// <summary>What one qcow2 CLI fuzz case did, for the run's counts.</summary>
internal sealed record Qcow2CliCaseOutcome(string Seed, bool Opened, bool Converted, string AgainstQemu);

/// <summary>
/// Runs the real <c>qed</c> program (<see cref="QedProcess"/>) on one qcow2 mutant in one worker's directory: info
/// (probed), check, convert to raw, compare with that raw copy, map and a read-only io. Every process must end within
/// <see cref="CliFuzzHarness.ProcessLimit"/> with its command's statuses (check 0-3; compare 0-2; the others 0 or 1),
/// at most one line on stderr (check: one per finding, as qemu-img check) and no unhandled exception; the mutant and the files it may name as backing are never
/// written; a failed convert leaves no output; a successful one compares equal to the image. When both qed and
/// qemu-img convert the mutant, their raw disks are compared (counted: QEMU reads some damage as zeros that we refuse).
/// </summary>
internal sealed class Qcow2CliFuzzHarness
{
    private const long ConvertLimit = 64L << 20;
    private const string Top = "fuzz.qcow2";

    private readonly string _dir;
    private readonly IReadOnlyList<(string Name, byte[] Bytes)> _seeds;
    private readonly IReadOnlyList<(string Name, byte[] Bytes)> _shared;

    /// <summary>Creates a harness working in <paramref name="dir"/>, where it first writes the files the images may name as backing.</summary>
    public Qcow2CliFuzzHarness(string dir, IReadOnlyList<(string Name, byte[] Bytes)> seeds, IReadOnlyList<(string Name, byte[] Bytes)> shared)
    {
        _dir = dir;
        _seeds = seeds;
        _shared = shared;
        Directory.CreateDirectory(dir);
        foreach (var (name, bytes) in shared)
        {
            File.WriteAllBytes(Path.Combine(dir, name), bytes);
        }
    }

    /// <summary>Runs one case; throws <see cref="CliFuzzException"/> (with the mutant saved) when a rule is broken.</summary>
    public Qcow2CliCaseOutcome Run(int caseSeed)
    {
        var random = new Random(caseSeed);
        foreach (string stale in new[] { Top, "out.raw", "qemu.raw" })
        {
            File.Delete(Path.Combine(_dir, stale));
        }
        var (seedName, seed) = _seeds[random.Next(_seeds.Count)];
        byte[] mutant = Qcow2Mutator.Mutate(seed, random);
        var log = new List<string>();
        try
        {
            var outcome = RunCommands(random, seedName, mutant, log);
            foreach (var (name, bytes) in _shared)
            {
                Rule(File.ReadAllBytes(Path.Combine(_dir, name)).AsSpan().SequenceEqual(bytes), $"the backing file {name} was changed");
            }
            var left = Directory.EnumerateFileSystemEntries(_dir).Select(Path.GetFileName).Except(_shared.Select(s => s.Name).Append(Top)).ToList();
            Rule(left.Count == 0, $"left behind: {string.Join(", ", left)}");
            return outcome;
        }
        catch (Exception e)
        {
            string what = e is CliRuleException or TimeoutException ? e.Message : e.ToString();
            throw new CliFuzzException($"mutant of {seedName} (saved as Regressions/{FuzzRegressions.Save(mutant, ".qcow2")}): {what}\n{string.Join("\n", log)}");
        }
    }

    private Qcow2CliCaseOutcome RunCommands(Random random, string seedName, byte[] mutant, List<string> log)
    {
        string top = Path.Combine(_dir, Top);
        File.WriteAllBytes(top, mutant);
        var info = Qed(log, [0, 1], "info", random.Next(2) == 0 ? "--output=json" : "--output=human", Top);
        // qemu-img check prints one stderr line per finding (QCOW2.md §13): so does ours, so no one-line rule here.
        Qed(log, [0, 1, 2, 3], "check", "-f", "qcow2", "--output=json", Top);
        Qed(log, [0, 1], "map", "-f", "qcow2", "--output=json", Top);
        Qed(log, [0, 1], "io", "-f", "qcow2", "-r", "-c", $"read {random.Next(0, 4) * 65536} {random.Next(1, 200_000)}", Top);

        bool converted = false;
        string againstQemu = "not converted";
        ulong size = mutant.Length >= 32 ? System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(mutant.AsSpan(24)) : 0;
        if (info.ExitCode == 0 && size <= ConvertLimit)
        {
            var result = Qed(log, [0, 1], "convert", "-f", "qcow2", "-O", "raw", Top, "out.raw");
            bool exists = File.Exists(Path.Combine(_dir, "out.raw"));
            Rule(exists == (result.ExitCode == 0), result.ExitCode == 0 ? "convert succeeded but wrote no output" : "a failed convert left its output file behind");
            converted = result.ExitCode == 0;
            if (converted)
            {
                Qed(log, [0], "compare", "-f", "qcow2", "-F", "raw", Top, "out.raw");
                againstQemu = AgainstQemu(log, mutant);
                File.Delete(Path.Combine(_dir, "out.raw"));
            }
        }
        Rule(File.ReadAllBytes(top).AsSpan().SequenceEqual(mutant), "the image was changed");
        return new Qcow2CliCaseOutcome(seedName, info.ExitCode == 0, converted, againstQemu);
    }

    /// <summary>qemu-img convert of the same mutant: equal, different, or refused by QEMU (a mutant naming itself hangs QEMU: not asked).</summary>
    private string AgainstQemu(List<string> log, byte[] mutant)
    {
        if (System.Text.Encoding.ASCII.GetString(mutant).Contains(Top, StringComparison.Ordinal))
        {
            return "not asked (may loop)";
        }
        ToolResult qemu;
        try
        {
            qemu = Tools.Run("qemu-img", ["convert", "-f", "qcow2", "-O", "raw", Top, "qemu.raw"], _dir, TimeSpan.FromSeconds(10));
        }
        catch (TimeoutException)
        {
            return "QEMU hangs";
        }
        finally
        {
            log.Add("$ qemu-img convert -f qcow2 -O raw fuzz.qcow2 qemu.raw");
        }
        string qemuRaw = Path.Combine(_dir, "qemu.raw");
        try
        {
            if (qemu.ExitCode != 0)
            {
                return "QEMU refuses";
            }
            bool same = Tools.Sha256OfFile(qemuRaw) == Tools.Sha256OfFile(Path.Combine(_dir, "out.raw"));
            return same ? "equal" : "different";
        }
        finally
        {
            File.Delete(qemuRaw);
        }
    }

    private ToolResult Qed(List<string> log, int[] statuses, params string[] args)
    {
        string command = "qed " + string.Join(' ', args);
        ToolResult result;
        try
        {
            result = QedProcess.Run(_dir, CliFuzzHarness.ProcessLimit, args);
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"{command} hangs: killed after {CliFuzzHarness.ProcessLimit.TotalSeconds:F0} s");
        }
        log.Add($"$ {command}\n{result}");
        // A mutant with its dirty or corrupt bit set is read with one warning line per flagged image; errors stay one line.
        string[] lines = result.StdErr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        string[] errorLines = [.. lines.Where(line => !line.StartsWith("qed: warning: ", StringComparison.Ordinal))];
        Rule(lines.Length - errorLines.Length <= 2, $"{command}: {lines.Length - errorLines.Length} warnings on stderr");
        Rule(!result.StdOut.Contains("Unhandled exception", StringComparison.OrdinalIgnoreCase)
            && !result.StdErr.Contains("Unhandled exception", StringComparison.OrdinalIgnoreCase), $"{command}: unhandled exception");
        Rule(statuses.Contains(result.ExitCode), $"{command}: exit status {result.ExitCode}, expected one of {string.Join(", ", statuses)}");
        Rule(errorLines.Length <= 1 || args[0] == "check", $"{command}: {errorLines.Length} lines on stderr");
        return result;
    }

    private static void Rule(bool condition, string rule)
    {
        if (!condition)
        {
            throw new CliRuleException(rule);
        }
    }

    private sealed class CliRuleException(string message) : Exception(message);
}
