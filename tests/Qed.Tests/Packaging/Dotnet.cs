using System.Diagnostics;
using System.Runtime.InteropServices;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Packaging;

/// <summary>Runs the .NET SDK (and programs it installs) as child processes for the packaging tests.</summary>
internal static class Dotnet
{
    /// <summary>The dotnet host running these tests (so the SDK matches), else the one on PATH.</summary>
    public static string Host => Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host) ? host : "dotnet";

    /// <summary>
    /// The .NET installation running these tests (…/shared/Microsoft.NETCore.App/10.0.x/ up three levels): a tool's
    /// launcher finds the runtime through DOTNET_ROOT wherever the SDK was installed.
    /// </summary>
    public static string Root => Path.GetFullPath(Path.Combine(RuntimeEnvironment.GetRuntimeDirectory(), "..", "..", ".."));

    /// <summary>Runs <c>dotnet ARGS</c> in <paramref name="workingDirectory"/> and fails the test unless it exits 0.</summary>
    public static ToolResult Ok(string workingDirectory, IReadOnlyDictionary<string, string>? environment, params string[] arguments) =>
        Expect(Run(Host, arguments, workingDirectory, environment), $"dotnet {string.Join(' ', arguments)}");

    /// <summary>Runs a program with arguments (no shell) and waits for it, up to five minutes.</summary>
    public static ToolResult Run(string program, IEnumerable<string> arguments, string workingDirectory, IReadOnlyDictionary<string, string>? environment = null)
    {
        var info = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory,
        };
        foreach (string argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }
        info.Environment["DOTNET_ROOT"] = Root;
        info.Environment["DOTNET_NOLOGO"] = "1";
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        info.Environment["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1";
        // No build servers or reused nodes: one left running would hold our output pipes open (and outlive the test).
        info.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        info.Environment["DOTNET_CLI_USE_MSBUILD_SERVER"] = "0";
        info.Environment["UseSharedCompilation"] = "false";
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[name] = value;
        }
        using var process = Process.Start(info) ?? throw new InvalidOperationException($"Could not start {program}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{program} {string.Join(' ', arguments)} did not finish in 5 minutes");
        }
        return new ToolResult(process.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>The result, unless the program failed.</summary>
    public static ToolResult Expect(ToolResult result, string what)
    {
        Assert.True(result.ExitCode == 0, $"{what} failed: {result}");
        return result;
    }
}
