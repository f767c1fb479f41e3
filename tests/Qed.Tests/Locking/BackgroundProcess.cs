using System.Diagnostics;
using System.Text;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Locking;

/// <summary>A program that keeps an image open in the background (qemu-nbd, qemu-io or qed io with <c>sleep</c>); disposing kills it and waits for it.</summary>
internal sealed class BackgroundProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly string _description;

    private BackgroundProcess(ProcessStartInfo info, string description)
    {
        info.RedirectStandardOutput = true;
        info.RedirectStandardError = true;
        info.UseShellExecute = false;
        _description = description;
        _process = Process.Start(info) ?? throw new InvalidOperationException($"Could not start {description}");
        // Drained as it comes, so a chatty program never blocks on a full pipe.
        _process.OutputDataReceived += (_, e) => Append(e.Data);
        _process.ErrorDataReceived += (_, e) => Append(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    /// <summary>True once the program ended (a holder that ends early was refused or failed).</summary>
    public bool HasExited => _process.HasExited;

    /// <summary>What it printed so far, both streams.</summary>
    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>Starts an external program (qemu-nbd, qemu-io) in <paramref name="workingDirectory"/>.</summary>
    public static BackgroundProcess Start(string workingDirectory, string program, params string[] arguments)
    {
        var info = new ProcessStartInfo(program) { WorkingDirectory = workingDirectory };
        foreach (string argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }
        return new BackgroundProcess(info, $"{program} {string.Join(' ', arguments)}");
    }

    /// <summary>Starts the real qed program (the Native AOT build when <c>QED_CLI</c> names it).</summary>
    public static BackgroundProcess Qed(string workingDirectory, params string[] arguments) =>
        new(QedProcess.StartInfo(workingDirectory, arguments), $"qed {string.Join(' ', arguments)}");

    /// <inheritdoc />
    public override string ToString() => _description;

    /// <summary>Kills the program (and anything it started) and waits until it is gone, so its locks are released.</summary>
    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }
            _process.WaitForExit();
        }
        finally
        {
            _process.Dispose();
        }
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (_output)
        {
            _output.Append(line).Append('\n');
        }
    }
}
