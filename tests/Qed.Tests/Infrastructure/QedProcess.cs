namespace Qed.Tests.Infrastructure;

/// <summary>Runs the real <c>qed</c> program as a separate process (for kill tests, CLI fuzzing and locking between processes).</summary>
/// <remarks>
/// <c>scripts/test</c> builds the Native AOT binary (<c>./qed</c>) and names it in <c>QED_CLI</c>: it starts in a few
/// milliseconds, so thousands of runs stay cheap. Without <c>QED_CLI</c> the tests run the managed build that sits beside them
/// (<c>dotnet Qed.Cli.dll</c>), which is always current but starts in about 80 ms.
/// </remarks>
public static class QedProcess
{
    /// <summary>The environment variable naming the qed executable to run.</summary>
    public const string Variable = "QED_CLI";

    /// <summary>The program and the arguments that come before qed's own.</summary>
    public static (string Program, string[] Prefix) Command
    {
        get
        {
            string? cli = Environment.GetEnvironmentVariable(Variable);
            if (!string.IsNullOrEmpty(cli))
            {
                return (cli, []);
            }
            return ("dotnet", [Path.Combine(AppContext.BaseDirectory, "Qed.Cli.dll")]);
        }
    }

    /// <summary>Runs <c>qed ARGS</c> in <paramref name="workingDirectory"/>; a run longer than <paramref name="timeout"/> is killed and throws <see cref="TimeoutException"/>.</summary>
    public static ToolResult Run(string workingDirectory, TimeSpan timeout, params string[] args)
    {
        var (program, prefix) = Command;
        return Tools.Run(program, [.. prefix, .. args], workingDirectory, timeout);
    }

    /// <summary>A start description for <c>qed ARGS</c> with both output streams redirected, for tests that drive or kill the process themselves.</summary>
    public static System.Diagnostics.ProcessStartInfo StartInfo(string workingDirectory, params string[] args)
    {
        var (program, prefix) = Command;
        var info = new System.Diagnostics.ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory,
        };
        foreach (string argument in prefix.Concat(args))
        {
            info.ArgumentList.Add(argument);
        }
        // A killed managed qed cannot remove its diagnostic pipes from /tmp; it needs none.
        info.Environment["DOTNET_EnableDiagnostics"] = "0";
        return info;
    }
}
