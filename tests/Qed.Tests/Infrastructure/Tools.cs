using System.Diagnostics;
using System.Security.Cryptography;

namespace Qed.Tests.Infrastructure;

/// <summary>Runs the oracle tools (qemu-img, qemu-io, ...) and small file helpers shared by the tests.</summary>
public static class Tools
{
    /// <summary>Runs a program with arguments (no shell) in <paramref name="workingDirectory"/> and waits up to <paramref name="timeout"/>.</summary>
    public static ToolResult Run(string program, IEnumerable<string> arguments, string? workingDirectory = null, TimeSpan? timeout = null)
    {
        var info = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? Environment.CurrentDirectory,
        };
        foreach (string argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }
        // A .NET child killed on timeout cannot remove its diagnostic pipes from /tmp; none of the tools needs them.
        info.Environment["DOTNET_EnableDiagnostics"] = "0";
        using var process = Process.Start(info) ?? throw new InvalidOperationException($"Could not start {program}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout ?? TimeSpan.FromMinutes(5)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{program} {string.Join(' ', arguments)} did not finish");
        }
        return new ToolResult(process.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Runs qemu-img and fails the test when it exits with a status other than <paramref name="expectedExit"/>.</summary>
    public static ToolResult QemuImg(string workingDirectory, params string[] arguments) => Expect(Run("qemu-img", arguments, workingDirectory), 0, "qemu-img", arguments);

    /// <summary>Runs qemu-img and returns whatever happened.</summary>
    public static ToolResult QemuImgRaw(string workingDirectory, params string[] arguments) => Run("qemu-img", arguments, workingDirectory);

    /// <summary>Runs <c>qemu-io -f FMT -t writeback -c CMD ... FILE</c> and fails the test unless every command succeeded.</summary>
    public static ToolResult QemuIo(string workingDirectory, string format, string file, params string[] commands)
    {
        var arguments = new List<string> { "-f", format, "-t", "writeback" };
        foreach (string command in commands)
        {
            arguments.Add("-c");
            arguments.Add(command);
        }
        arguments.Add(file);
        var result = Run("qemu-io", arguments, workingDirectory);
        if (result.ExitCode != 0 || result.StdOut.Contains("failed", StringComparison.Ordinal))
        {
            throw new InvalidOperationException($"qemu-io {string.Join(' ', arguments)} failed: {result}");
        }
        return result;
    }

    /// <summary>sha256 (lower-case hex) of a file.</summary>
    public static string Sha256OfFile(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    /// <summary>sha256 of <c>qemu-img convert -O raw</c> of an image: QEMU's view of the virtual disk.</summary>
    public static string QemuFlattenDigest(string workingDirectory, string image, string format = "qed")
    {
        string raw = Path.Combine(workingDirectory, "flatten-" + Guid.NewGuid().ToString("N")[..8] + ".raw");
        try
        {
            QemuImg(workingDirectory, "convert", "-f", format, "-O", "raw", image, raw);
            return Sha256OfFile(raw);
        }
        finally
        {
            File.Delete(raw);
        }
    }

    /// <summary>Writes <paramref name="bytes"/> at <paramref name="offset"/> without truncating (the fixtures' <c>poke</c>).</summary>
    public static void Poke(string path, long offset, params byte[] bytes)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Write);
        stream.Seek(offset, SeekOrigin.Begin);
        stream.Write(bytes);
    }

    /// <summary>Writes a little-endian u64 at <paramref name="offset"/>.</summary>
    public static void PokeU64(string path, long offset, ulong value) => Poke(path, offset, BitConverter.GetBytes(value));

    private static ToolResult Expect(ToolResult result, int expectedExit, string program, string[] arguments)
    {
        if (result.ExitCode != expectedExit)
        {
            throw new InvalidOperationException($"{program} {string.Join(' ', arguments)}: expected exit {expectedExit}, got {result}");
        }
        return result;
    }
}
